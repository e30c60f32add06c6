"""``serve`` over a write store that goes away and comes back: 503 WRITE_STORE_UNAVAILABLE (with the
command's id) and an unhealthy /healthz while it is away, accepted again once it is back, nothing lost."""

from __future__ import annotations

from .test_commands import register as register_customer


def register(n: int) -> dict:
    return register_customer(f"c-{n}", commandId=f"reg-{n}")


def test_serve_answers_503_while_the_store_is_away_and_200_once_it_is_back(tmp_path, served):
    server = served(tmp_path / "warehouse")
    with server.client() as client:
        first = client.post("/commands", json=register(1))
        assert first.status_code == 200, first.text
        server.warehouse.rename(tmp_path / "moved")
        away = client.post("/commands", json=register(2))
        assert away.status_code == 503 and away.json()["error"]["code"] == "WRITE_STORE_UNAVAILABLE"
        assert away.json()["commandId"] == "reg-2"
        assert client.get("/healthz").status_code == 503
        (tmp_path / "moved").rename(server.warehouse)
        back = client.post("/commands", json=register(2))
        assert back.status_code == 200, back.text
        assert client.get("/healthz").json()["writeStore"] == "ok"
    assert server.stored()["commands"] == 2
