"""`mtl serve` of a housebrain LoRA bundle (tiny random Llama): designs, validation and bad JSON.

The tiny model's designs are not good; what is checked is what a client relies on: the reply's
shape, constrained decoding on by default, validator findings and SVG floor plans for a valid
design, and 4xx naming the field for bad requirements, with the server still answering after.
"""

from __future__ import annotations

import json

import httpx

from tests.serving.conftest import Server


def generated_pair(seed: int = 7) -> tuple[dict, dict]:
    from housebrain.data.generator import requirements_from_prompt, sample

    messages = sample(seed)["messages"]
    return requirements_from_prompt(messages[1]["content"]), json.loads(messages[2]["content"])


def test_designs_validate_and_bad_json(housebrain_server: Server) -> None:
    url = housebrain_server.url
    requirements, design = generated_pair()
    schema = httpx.get(f"{url}/openapi.json").json()
    assert (
        "plot"
        in schema["paths"]["/v1/designs"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )

    answer = httpx.post(f"{url}/v1/designs", json=requirements, params={"max_new_tokens": 48}, timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["constrained"] is True
    assert set(body) >= {"design", "findings", "svg", "generation_seconds"}
    assert isinstance(body["findings"]["findings"], list)

    checked = httpx.post(
        f"{url}/v1/validate", json={"requirements": requirements, "design": design}, timeout=60
    )
    assert checked.status_code == 200, checked.text
    report = checked.json()
    assert report["findings"]["passed"] is True, report["findings"]
    levels = {f"level_{level['level']}" for level in design["levels"]}
    assert set(report["svg"]) == levels and all(
        svg.lstrip().startswith("<svg") for svg in report["svg"].values()
    )

    broken = {**design, "levels": "upstairs"}
    failed = httpx.post(
        f"{url}/v1/validate", json={"requirements": requirements, "design": broken}, timeout=60
    )
    assert failed.status_code == 200 and failed.json()["findings"]["passed"] is False

    bad = [
        (
            {"content": b'{"plot": [15, 25', "headers": {"content-type": "application/json"}},
            400,
            "body: expected valid JSON",
        ),
        (
            {"content": b"plot=15", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            415,
            "content-type",
        ),
        ({"json": {**requirements, "floors": 9}}, 422, "floors"),
        ({"json": {**requirements, "rooms": 3}}, 422, "rooms"),
        ({"json": [1, 2, 3]}, 422, "body"),
        ({"json": requirements, "params": {"max_new_tokens": 0}}, 400, "query.max_new_tokens"),
        ({"json": requirements, "params": {"constrained": "maybe"}}, 400, "query.constrained"),
    ]
    for request, status, named in bad:
        refused = httpx.post(f"{url}/v1/designs", timeout=60, **request)
        assert refused.status_code == status, (request, refused.text)
        assert named in refused.json()["error"], refused.json()
    missing = httpx.post(f"{url}/v1/validate", json={"design": design}, timeout=60)
    assert missing.status_code == 422 and "requirements" in missing.json()["error"]

    assert httpx.get(f"{url}/healthz").status_code == 200
    again = httpx.post(
        f"{url}/v1/validate", json={"requirements": requirements, "design": design}, timeout=60
    )
    assert again.status_code == 200
