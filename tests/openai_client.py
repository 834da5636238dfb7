"""Drives a running `persona serve` (tiny model) with the real `openai`
Python client: models, chat, streaming with usage, embeddings, structured
output (json_schema from a pydantic model), the personal
flow with two users from the shared data, and errors as the SDK's typed
exceptions. Run by scripts/test-openai, which starts the server.

usage: python tests/openai_client.py BASE_URL SHARED_DATA_DIR
"""

import json
import sys
import urllib.request

import openai

BASE, DATA = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=BASE + "/v1", api_key="not-needed", max_retries=0)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what.split("\n")[0][:100])


def raw(method, path, body=None):
    data = None if body is None else body.encode()
    req = urllib.request.Request(BASE + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


# Models.
ids = [m.id for m in client.models.list()]
check(ids == ["tiny", "persona-agent"], f"models: {ids}")

# A whole reply.
question = [{"role": "user", "content": "What is the capital of France?"}]
whole = client.chat.completions.create(model="tiny", messages=question, max_tokens=12, temperature=0, seed=3)
text = whole.choices[0].message.content
check(whole.object == "chat.completion" and text, f"chat: {text!r}")
check(whole.usage.completion_tokens <= 12 and whole.usage.prompt_tokens > 5, f"usage: {whole.usage}")

# The same reply streamed, with the usage chunk last.
stream = client.chat.completions.create(model="tiny", messages=question, max_tokens=12, temperature=0, seed=3, stream=True, stream_options={"include_usage": True})
chunks = list(stream)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(streamed == text, f"stream carries the same text: {streamed!r}")
check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens, "usage chunk last, no choices")
check([c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason, "finish reason on the last choice chunk")

# Embeddings on the sentence encoder.
emb = client.embeddings.create(model="minilm", input=["a cat sat on the mat", "stock markets fell"])
check(len(emb.data) == 2 and len(emb.data[0].embedding) == 384, f"embeddings: {len(emb.data)} x {len(emb.data[0].embedding)}")
norm = sum(x * x for x in emb.data[0].embedding) ** 0.5
check(abs(norm - 1.0) < 1e-3, f"unit vectors ({norm:.4f})")

# Structured output: a pydantic model through the SDK's parse helper (it
# sends a strict json_schema); the reply is always a valid instance.
from typing import Literal

import pydantic


class Cat(pydantic.BaseModel):
    mood: Literal["happy", "hungry", "sleepy"]
    indoor: bool


parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
parsed = parse(model="tiny", messages=[{"role": "user", "content": "Describe my cat."}], response_format=Cat, max_tokens=60, temperature=0)
cat = parsed.choices[0].message.parsed
check(isinstance(cat, Cat), f"json_schema from a pydantic model: {cat!r}")
check(parsed.choices[0].message.content.startswith('{"mood":"'), "properties in declared order")
try:
    client.chat.completions.create(model="tiny", messages=question, max_tokens=8, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "string", "minLength": 3}}}}})
    check(False, "an unenforceable schema is refused")
except openai.BadRequestError as e:
    check(e.body["param"] == "response_format.json_schema.schema" and "minLength" in e.body["message"], "an unenforceable schema: BadRequestError naming the keyword")

# Two users from the shared data: their own records and personas.
rows = [json.loads(l) for l in open(f"{DATA}/news/huffpost_news_category_subset.jsonl")]
by_author = {}
for r in rows:
    a = r.get("authors", "")
    if a and "," not in a:
        by_author.setdefault(a, []).append(r)
authors = sorted(a for a, rs in by_author.items() if len(rs) >= 10)[:2]
users = {}
for i, author in enumerate(authors):
    user = f"py-reader-{i}"
    records = "\n".join(json.dumps({"query": f"{r['headline']}. {r['short_description']}", "response": r["category"].lower()}) for r in by_author[author][:10])
    report = raw("POST", f"/v1/users/{user}/records", records)
    check(report["added"] == 10, f"imported 10 records of {author} for {user}")
    found = raw("GET", f"/v1/users/{user}/records/search?q=news&k=100")
    users[user] = {h["id"] for h in found["data"]}

ask = [{"role": "user", "content": "Which section would you file a story about an election under?"}]
for n, user in enumerate(users):
    # `user` in the body for one, the header Open WebUI sends for the other.
    if n == 0:
        reply = client.chat.completions.create(model="tiny", messages=ask, max_tokens=6, temperature=0, user=user)
    else:
        reply = client.chat.completions.create(model="tiny", messages=ask, max_tokens=6, temperature=0, extra_headers={"X-OpenWebUI-User-Id": user})
    ctx = reply.model_extra["persona_context"]
    persona = raw("GET", f"/v1/users/{user}/persona")
    check(ctx["user"] == user and ctx["persona_version"] == persona["version"], f"{user}'s prompt carries their persona v{persona['version']}")
    others = set().union(*(ids for u, ids in users.items() if u != user))
    check(ctx["records"] and set(ctx["records"]) <= users[user] and not set(ctx["records"]) & others, f"{user}'s prompt holds only their records")

first = next(iter(users))
deleted = raw("DELETE", f"/v1/users/{first}")
check(deleted["deleted"], f"deleted {first}")
try:
    raw("GET", f"/v1/users/{first}/persona")
    check(False, "a deleted user has no persona")
except urllib.error.HTTPError as e:
    check(e.code == 404, "a deleted user has no persona (404)")

# Errors as the SDK's exceptions.
try:
    client.chat.completions.create(model="gpt-4o", messages=question)
    check(False, "unknown model refused")
except openai.NotFoundError as e:
    check(e.status_code == 404 and e.body["code"] == "model_not_found", "unknown model: NotFoundError")
try:
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 40000}], max_tokens=8)
    check(False, "over-long prompt refused")
except openai.BadRequestError as e:
    check(e.body["code"] == "context_length_exceeded", f"over-long prompt: BadRequestError ({e.body['message'][:60]}...)")
try:
    client.chat.completions.create(model="tiny", messages=question, extra_body={"max_tokens": "ten"})
    check(False, "wrong field type refused")
except openai.UnprocessableEntityError as e:
    check(e.body["param"] == "max_tokens", "wrong field type: UnprocessableEntityError naming max_tokens")
print("openai client: all checks passed")
