//! Plots of benchmark results, each written as PNG and SVG: line charts
//! with confidence intervals (test-time scaling, paper Fig. 3), grouped
//! bars (backbones, Fig. 4), a heatmap (persona Jaccard similarity, Fig. 5)
//! and a labelled scatter (the 2-D map of persona embeddings, Fig. 2).
//!
//! Text is drawn with a font embedded in the binary (Ubuntu Light from
//! `epaint_default_fonts`), so plotting needs no system font library.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::error::{LampError, Result};

/// Font family name the plots use (registered on first use).
const FONT: &str = "sans-serif";

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
                .map_err(|_| "the embedded font could not be read".to_string())
        })
        .clone()
        .map_err(|message| LampError::Plot { path: PathBuf::new(), message })
}

/// Something drawable on any plotters backend.
trait Figure {
    /// Pixel size (width, height).
    fn size(&self) -> (u32, u32) {
        (900, 560)
    }
    /// Draws onto `root`; errors are described in text.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String>;
}

/// Writes `figure` to `<stem>.svg` and `<stem>.png`; returns both paths.
fn save(figure: &impl Figure, stem: &Path) -> Result<Vec<PathBuf>> {
    register_font()?;
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LampError::Io { path: dir.to_path_buf(), source })?;
    }
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| LampError::Plot { path: path.clone(), message }
    };
    {
        let root = SVGBackend::new(&svg, figure.size()).into_drawing_area();
        figure.draw(&root).and_then(|()| root.present().map_err(|e| e.to_string())).map_err(fail(&svg))?;
    }
    {
        let root = BitMapBackend::new(&png, figure.size()).into_drawing_area();
        figure.draw(&root).and_then(|()| root.present().map_err(|e| e.to_string())).map_err(fail(&png))?;
    }
    Ok(vec![svg, png])
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Draws the series legend in the upper right corner.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(chart: &mut ChartContext<'a, DB, CT>) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}

/// The colour of series `i` (a fixed qualitative palette).
fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// A point of a line series: x, y and an optional interval around y.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The x value.
    pub x: f64,
    /// The y value.
    pub y: f64,
    /// A (low, high) interval for y, drawn as a vertical bar.
    pub interval: Option<(f64, f64)>,
}

/// A named line series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Points, in x order.
    pub points: Vec<Point>,
}

/// Axis titles and the chart title.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// Chart title.
    pub title: String,
    /// X axis title.
    pub x: String,
    /// Y axis title.
    pub y: String,
}

/// The (min, max) of `values`, widened when empty or flat.
fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-9);
    let pad = if hi - lo < 1e-9 { 0.5 } else { span * pad };
    (lo - pad, hi + pad)
}

type XY = Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>;

/// A titled x-y chart with room for the axis labels.
fn xy_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> std::result::Result<ChartContext<'a, DB, XY>, String> {
    ChartBuilder::on(root).caption(title, (FONT, 22)).margin(14).x_label_area_size(44).y_label_area_size(60).build_cartesian_2d(x, y).map_err(err)
}

struct LineChart<'a> {
    labels: &'a Labels,
    series: &'a [Series],
}

impl Figure for LineChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = range(points().map(|p| p.x), 0.05);
        let (y0, y1) = range(points().flat_map(|p| [p.y, p.interval.map_or(p.y, |i| i.0), p.interval.map_or(p.y, |i| i.1)]), 0.08);
        let mut chart = xy_chart(root, &self.labels.title, x0..x1, y0..y1)?;
        // Swept settings are integers: tick at whole numbers only.
        let integral = points().all(|p| p.x.fract() == 0.0);
        let whole = |x: &f64| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() };
        let plain = |x: &f64| format!("{x:.2}");
        let ticks = if integral { ((x1 - x0).ceil() as usize * 4 + 1).min(41) } else { 10 };
        chart
            .configure_mesh()
            .x_desc(&self.labels.x)
            .y_desc(&self.labels.y)
            .x_labels(ticks)
            .x_label_formatter(if integral { &whole } else { &plain })
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        let dx = (x1 - x0) * 0.006;
        for (i, s) in self.series.iter().enumerate() {
            let c = colour(i);
            // Offset each series a little so the interval bars do not overlap.
            let shift = (i as f64 - (self.series.len() as f64 - 1.0) / 2.0) * dx;
            chart
                .draw_series(LineSeries::new(s.points.iter().map(|p| (p.x + shift, p.y)), c.stroke_width(2)))
                .map_err(err)?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            chart.draw_series(s.points.iter().map(|p| Circle::new((p.x + shift, p.y), 4, c.filled()))).map_err(err)?;
            chart
                .draw_series(
                    s.points.iter().filter_map(|p| p.interval.map(|(lo, hi)| PathElement::new(vec![(p.x + shift, lo), (p.x + shift, hi)], c.stroke_width(1)))),
                )
                .map_err(err)?;
        }
        legend(&mut chart)
    }
}

/// A line chart (one line per series, interval bars where given).
pub fn line_chart(stem: &Path, labels: &Labels, series: &[Series]) -> Result<Vec<PathBuf>> {
    save(&LineChart { labels, series }, stem)
}

struct Bars<'a> {
    labels: &'a Labels,
    groups: &'a [String],
    series: &'a [(String, Vec<Option<f64>>)],
    /// Per series, per group: the interval drawn as a whisker (may be empty).
    intervals: &'a [Vec<Option<[f64; 2]>>],
}

impl Figure for Bars<'_> {
    /// Wide enough for each group's bars and for its label under them (at
    /// the 13 px label font, about 8 px a character), so that labels such
    /// as `persona-agent` and `no-alignment` never run into each other.
    fn size(&self) -> (u32, u32) {
        let longest = self.groups.iter().map(|g| g.chars().count()).max().unwrap_or(0);
        let per_group = (self.series.len().max(1) * 26).max(longest * 8 + 16);
        ((self.groups.len() * per_group + 220).max(700) as u32, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let ends = self.intervals.iter().flat_map(|v| v.iter().flatten().flat_map(|i| i.iter().copied()));
        let values = || self.series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).chain(ends.clone());
        let top = values().fold(0.0f64, f64::max).max(1e-9) * 1.12;
        let bottom = values().fold(0.0f64, f64::min).min(0.0);
        let groups = self.groups.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.labels.title, (FONT, 22))
            .margin(14)
            .x_label_area_size(64)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..groups as f64, bottom..top)
            .map_err(err)?;
        let label = centre_labels(self.groups);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups * 2 + 1)
            .x_label_formatter(&label)
            .x_desc(&self.labels.x)
            .y_desc(&self.labels.y)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        let width = 0.8 / self.series.len().max(1) as f64;
        for (k, (name, values)) in self.series.iter().enumerate() {
            let c = colour(k);
            chart
                .draw_series(values.iter().enumerate().filter_map(|(g, v)| {
                    v.map(|v| {
                        let x = g as f64 + 0.1 + k as f64 * width;
                        Rectangle::new([(x, 0.0), (x + width * 0.92, v)], c.filled())
                    })
                }))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
            // The interval as a whisker with caps, centred on the bar.
            if let Some(intervals) = self.intervals.get(k) {
                let whiskers = intervals.iter().enumerate().filter_map(|(g, i)| i.map(|i| (g, i)));
                chart
                    .draw_series(whiskers.flat_map(|(g, [lo, hi])| {
                        let x = g as f64 + 0.1 + (k as f64 + 0.46) * width;
                        let cap = width * 0.2;
                        [vec![(x, lo), (x, hi)], vec![(x - cap, lo), (x + cap, lo)], vec![(x - cap, hi), (x + cap, hi)]]
                            .into_iter()
                            .map(|p| PathElement::new(p, BLACK.stroke_width(1)))
                    }))
                    .map_err(err)?;
            }
            // The value over each bar: a zero reads "0.00", a missing
            // value shows nothing.
            let style = TextStyle::from((FONT, 10).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .filter_map(|(g, v)| v.map(|v| Text::new(format!("{v:.2}"), (g as f64 + 0.1 + (k as f64 + 0.46) * width, v.max(0.0)), style.clone()))),
                )
                .map_err(err)?;
        }
        legend(&mut chart)
    }
}

/// Grouped bars: one group per entry of `groups` (e.g. methods), one bar per
/// series (e.g. backbones); `None` leaves a gap.
pub fn grouped_bars(stem: &Path, labels: &Labels, groups: &[String], series: &[(String, Vec<Option<f64>>)]) -> Result<Vec<PathBuf>> {
    grouped_bars_with_intervals(stem, labels, groups, series, &[])
}

/// [`grouped_bars`] with each bar's interval drawn as a whisker:
/// `intervals[k][g]` belongs to series `k`, group `g` (`None`: no whisker;
/// an empty slice: none at all).
pub fn grouped_bars_with_intervals(
    stem: &Path,
    labels: &Labels,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
    intervals: &[Vec<Option<[f64; 2]>>],
) -> Result<Vec<PathBuf>> {
    if let Some((name, v)) = series.iter().find(|(_, v)| v.len() != groups.len()) {
        return Err(LampError::Plot { path: stem.to_path_buf(), message: format!("series '{name}' has {} values for {} groups", v.len(), groups.len()) });
    }
    if !intervals.is_empty() && (intervals.len() != series.len() || intervals.iter().any(|i| i.len() != groups.len())) {
        return Err(LampError::Plot {
            path: stem.to_path_buf(),
            message: format!("intervals for {} series of {} groups do not match the bars", intervals.len(), groups.len()),
        });
    }
    save(&Bars { labels, groups, series, intervals }, stem)
}

struct Heatmap<'a> {
    title: &'a str,
    names: &'a [String],
    matrix: &'a [Vec<f64>],
}

/// White to dark blue for 0..1.
fn shade(v: f64) -> RGBColor {
    let t = v.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        let side = (self.names.len() as u32 * 44 + 160).clamp(480, 1400);
        (side + 110, side)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let n = self.names.len();
        let (main, bar) = root.split_horizontally(self.size().0 - 110);
        let font = if n <= 12 { 12 } else { 10 };
        let label = centre_labels(self.names);
        let mut chart = ChartBuilder::on(&main)
            .caption(self.title, (FONT, 22))
            .margin(14)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, n as f64..0.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n * 2 + 1)
            .y_labels(n * 2 + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .label_style((FONT, font))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(self.matrix.iter().enumerate().flat_map(|(i, row)| {
                row.iter().enumerate().map(move |(j, &v)| Rectangle::new([(j as f64, i as f64), (j as f64 + 1.0, i as f64 + 1.0)], shade(v).filled()))
            }))
            .map_err(err)?;
        if n <= 24 {
            chart
                .draw_series(self.matrix.iter().enumerate().flat_map(|(i, row)| {
                    row.iter().enumerate().map(move |(j, &v)| {
                        let colour: &'static RGBColor = if v > 0.55 { &WHITE } else { &BLACK };
                        let style = TextStyle::from((FONT, 11).into_font()).color(colour).pos(Pos::new(HPos::Center, VPos::Center));
                        Text::new(format!("{v:.2}"), (j as f64 + 0.5, i as f64 + 0.5), style)
                    })
                }))
                .map_err(err)?;
        }
        // Colour scale 0..1.
        let mut scale = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(44)
            .margin_left(16)
            .margin_right(12)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(err)?;
        scale.configure_mesh().disable_mesh().disable_x_axis().y_labels(6).label_style((FONT, 12)).draw().map_err(err)?;
        scale
            .draw_series((0..50).map(|k| Rectangle::new([(0.0, k as f64 / 50.0), (1.0, (k + 1) as f64 / 50.0)], shade((k as f64 + 0.5) / 50.0).filled())))
            .map_err(err)?;
        Ok(())
    }
}

/// A heatmap of a square matrix of values in 0..1 with row/column names.
pub fn heatmap(stem: &Path, title: &str, names: &[String], matrix: &[Vec<f64>]) -> Result<Vec<PathBuf>> {
    if matrix.len() != names.len() || matrix.iter().any(|row| row.len() != names.len()) {
        return Err(LampError::Plot { path: stem.to_path_buf(), message: format!("the matrix is not {0}x{0} for {0} names", names.len()) });
    }
    save(&Heatmap { title, names, matrix }, stem)
}

struct Scatter<'a> {
    labels: &'a Labels,
    names: &'a [String],
    points: &'a [[f64; 2]],
}

impl Figure for Scatter<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        let (x0, x1) = range(self.points.iter().map(|p| p[0]), 0.12);
        let (y0, y1) = range(self.points.iter().map(|p| p[1]), 0.12);
        let mut chart = xy_chart(root, &self.labels.title, x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.labels.x)
            .y_desc(&self.labels.y)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        chart.draw_series(self.points.iter().enumerate().map(|(i, p)| Circle::new((p[0], p[1]), 6, colour(i).filled()))).map_err(err)?;
        chart
            .draw_series(
                self.points
                    .iter()
                    .zip(self.names)
                    .map(|(p, name)| Text::new(name.clone(), (p[0], p[1]), TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom)))),
            )
            .map_err(err)?;
        Ok(())
    }
}

/// A scatter of named 2-D points.
pub fn scatter(stem: &Path, labels: &Labels, names: &[String], points: &[[f64; 2]]) -> Result<Vec<PathBuf>> {
    if names.len() != points.len() {
        return Err(LampError::Plot { path: stem.to_path_buf(), message: format!("{} names for {} points", names.len(), points.len()) });
    }
    save(&Scatter { labels, names, points }, stem)
}

/// An axis label formatter for categories drawn on `[i, i + 1)`: the name
/// of category `i` at its centre `i + 0.5`, nothing at other ticks.
fn centre_labels(names: &[String]) -> impl Fn(&f64) -> String {
    let names = names.to_vec();
    move |x: &f64| {
        let i = x.floor() as usize;
        if (x - x.floor() - 0.5).abs() < 1e-6 {
            names.get(i).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        Labels { title: "LaMP-2N: accuracy over E".into(), x: "E".into(), y: "accuracy".into() }
    }

    /// Checks both files exist, the SVG holds the texts and the PNG decodes
    /// to the figure's size with more than one colour.
    fn check(paths: &[PathBuf], texts: &[&str]) {
        assert_eq!(paths.len(), 2);
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for t in texts {
            assert!(svg.contains(t), "the SVG lacks '{t}'");
        }
        let png = std::fs::read(&paths[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn line_chart_writes_svg_and_png_with_legend_and_intervals() {
        let dir = tempfile::tempdir().unwrap();
        let p = |x: f64, y: f64| Point { x, y, interval: Some((y - 0.1, y + 0.1)) };
        let series = vec![
            Series { name: "persona-agent".into(), points: vec![p(1.0, 0.4), p(2.0, 0.5), p(3.0, 0.55)] },
            Series { name: "no-alignment".into(), points: vec![p(1.0, 0.3), p(2.0, 0.3), p(3.0, 0.3)] },
        ];
        let paths = line_chart(&dir.path().join("sub/scaling-E"), &labels(), &series).unwrap();
        check(&paths, &["persona-agent", "no-alignment", "accuracy", "LaMP-2N: accuracy over E"]);
        assert!(paths[1].ends_with("sub/scaling-E.png"));
    }

    #[test]
    fn single_points_and_flat_values_still_plot() {
        let dir = tempfile::tempdir().unwrap();
        let series = vec![Series { name: "rag-4".into(), points: vec![Point { x: 4.0, y: 0.5, interval: None }] }];
        check(&line_chart(&dir.path().join("one"), &labels(), &series).unwrap(), &["rag-4"]);
        check(&line_chart(&dir.path().join("none"), &labels(), &[]).unwrap(), &["accuracy"]);
    }

    #[test]
    fn heatmap_and_scatter_name_every_user() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = ["lamp-0", "lamp-1", "lamp-2"].map(String::from).to_vec();
        let m = vec![vec![1.0, 0.2, 0.4], vec![0.2, 1.0, 0.3], vec![0.4, 0.3, 1.0]];
        check(&heatmap(&dir.path().join("jaccard"), "Jaccard", &names, &m).unwrap(), &["lamp-0", "lamp-2", "0.40"]);
        let pts = [[0.0, 1.0], [1.0, -1.0], [-0.5, 0.2]];
        check(&scatter(&dir.path().join("map"), &Labels { title: "map".into(), x: "PC1".into(), y: "PC2".into() }, &names, &pts).unwrap(), &["lamp-1", "PC2"]);
        assert!(heatmap(&dir.path().join("bad"), "x", &names, &m[..2]).is_err());
        assert!(scatter(&dir.path().join("bad"), &labels(), &names, &pts[..1]).is_err());
    }

    #[test]
    fn grouped_bars_check_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let groups: Vec<String> = vec!["prompt".into(), "rag-4".into()];
        let series = vec![("tiny".to_string(), vec![Some(0.2), Some(0.3)]), ("small".to_string(), vec![Some(0.25), None])];
        check(&grouped_bars(&dir.path().join("backbones"), &labels(), &groups, &series).unwrap(), &["tiny", "small", "rag-4", "0.25"]);
        let bad = vec![("tiny".to_string(), vec![Some(0.2)])];
        let e = grouped_bars(&dir.path().join("b"), &labels(), &groups, &bad).unwrap_err().to_string();
        assert!(e.contains("'tiny' has 1 values for 2 groups"), "{e}");
        // Whiskers: the SVG gains their lines; mismatched intervals are refused.
        let intervals = vec![vec![Some([0.1, 0.35]), None], vec![Some([0.15, 0.9]), None]];
        let plain = std::fs::read_to_string(dir.path().join("backbones.svg")).unwrap();
        let files = grouped_bars_with_intervals(&dir.path().join("whiskers"), &labels(), &groups, &series, &intervals).unwrap();
        let svg = std::fs::read_to_string(files.iter().find(|f| f.extension().is_some_and(|e| e == "svg")).unwrap()).unwrap();
        assert!(svg.matches("<polyline").count() >= plain.matches("<polyline").count() + 6, "two whiskers of three lines each");
        assert!(grouped_bars_with_intervals(&dir.path().join("w2"), &labels(), &groups, &series, &intervals[..1]).is_err());
    }

    #[test]
    fn bar_charts_widen_for_many_long_labels() {
        let all = ["prompt", "icl", "rag-1", "rag-4", "pag-4", "react", "membank", "persona-agent", "no-alignment", "no-persona", "no-memory", "no-action"];
        let groups: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let series = vec![("LaMP-3".to_string(), vec![Some(0.5); groups.len()])];
        let (w, _) = Bars { labels: &labels(), groups: &groups, series: &series, intervals: &[] }.size();
        // The plotting area (less the label and margin room) gives every
        // group at least the width of "persona-agent" at 8 px a character.
        assert!((w as usize - 220) / groups.len() >= "persona-agent".len() * 8, "{w} px for {} groups", groups.len());
        let few = vec!["a".to_string(), "b".to_string()];
        let (w, _) = Bars { labels: &labels(), groups: &few, series: &series, intervals: &[] }.size();
        assert_eq!(w, 700, "small charts keep the minimum width");
    }
}
