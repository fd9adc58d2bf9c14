from conftest import CP, RunningServer


async def test_health_and_namespaces(server: RunningServer) -> None:
    async with server.client() as c:
        r = await c.get("/api/health")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok"}
        r = await c.get("/api/namespaces", headers=CP)
        assert r.status_code == 200
        assert [n["name"] for n in r.json()["namespaces"]] == ["default"]
