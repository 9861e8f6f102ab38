from sqlalchemy import select

from api.orm import AuditEntry, PriceHistory
from api.security import Role

CSV_HEADER = "sku,name,category,list_price,unit_cost,currency\n"


def test_put_product_creates_then_replaces(api):
    body = {
        "name": "Green tea",
        "category": "tea",
        "list_price": "4.99",
        "unit_cost": "2.10",
        "currency": "USD",
    }
    created = api.put("/v1/products/TEA-9", Role.MERCHANDISER, json=body)
    assert created.status_code == 201
    assert created.json()["list_price"] == "4.99"
    replaced = api.put("/v1/products/TEA-9", Role.MERCHANDISER, json={**body, "list_price": "5.49"})
    assert replaced.status_code == 200
    assert api.get("/v1/products/TEA-9", Role.ANALYST).json()["list_price"] == "5.49"


def test_product_changes_are_audited_with_before_and_after(api, sessions):
    api.product("TEA-9", "4.99")
    api.product("TEA-9", "5.49")
    with sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.entity == "product")).all()
    assert [(e.action, e.entity_id, e.actor, e.role) for e in entries] == [
        ("create", "TEA-9", "test-merchandiser", "merchandiser"),
        ("update", "TEA-9", "test-merchandiser", "merchandiser")]  # fmt: skip
    assert entries[0].before is None and entries[0].after["list_price"] == "4.99"
    assert entries[1].before["list_price"] == "4.99" and entries[1].after["list_price"] == "5.49"
    assert entries[1].at.tzinfo is not None


def test_unchanged_put_is_not_audited_and_list_price_changes_enter_price_history(api, sessions):
    api.product("TEA-9", "4.99")
    api.product("TEA-9", "4.99")
    api.product("TEA-9", "4.99", unit_cost="3.00")
    api.product("TEA-9", "5.49", unit_cost="3.00")
    with sessions() as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.entity == "product").order_by(AuditEntry.id)
        ).all()
        history = session.scalars(select(PriceHistory.price_minor).order_by(PriceHistory.id)).all()
    assert actions == ["create", "update", "update"]
    assert history == [499, 549]


def test_import_json_creates_and_updates_all_rows(api):
    api.product("A-1", "1.00")
    rows = [
        {"sku": "A-1", "name": "a", "category": "tea", "list_price": "2.00", "unit_cost": "1.00", "currency": "USD"},
        {"sku": "A-2", "name": "b", "category": "tea", "list_price": "300", "unit_cost": "100", "currency": "JPY"},
    ]  # fmt: skip
    response = api.post("/v1/products:import", Role.MERCHANDISER, json=rows)
    assert response.status_code == 200, response.text
    assert response.json() == {"created": 1, "updated": 1, "unchanged": 0}
    page = api.get("/v1/products", Role.ANALYST).json()
    assert [(p["sku"], p["list_price"], p["currency"]) for p in page["items"]] == [
        ("A-1", "2.00", "USD"), ("A-2", "300", "JPY")]  # fmt: skip


def test_import_csv(api):
    text = CSV_HEADER + "B-1,Mug,kitchen,12.00,5.00,USD\nB-2,Kettle,kitchen,40,20,USD\n"
    response = api.post(
        "/v1/products:import", Role.MERCHANDISER, content=text, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    assert api.get("/v1/products/B-2", Role.ANALYST).json()["list_price"] == "40.00"


def test_import_is_all_or_nothing_and_names_row_and_column(api):
    text = (
        CSV_HEADER
        + "B-1,Mug,kitchen,12.00,5.00,USD\nB-2,Kettle,kitchen,-4,20,USD\nB-3,Pot,kitchen,9,x,EUR\n"
    )
    response = api.post(
        "/v1/products:import", Role.MERCHANDISER, content=text, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    fields = [p["field"] for p in response.json()["detail"]]
    assert fields == ["row 3.list_price", "row 4.unit_cost"]
    assert api.get("/v1/products", Role.ANALYST).json()["items"] == []


def test_import_json_errors_name_the_row_index(api):
    rows = [{"sku": "A-1", "name": "a", "category": "tea", "list_price": "2.00", "unit_cost": "1.00", "currency": "USD"},
            {"sku": "A-2", "name": "b", "category": "tea", "list_price": 3.5, "unit_cost": "1", "currency": "USD"}]  # fmt: skip
    response = api.post("/v1/products:import", Role.MERCHANDISER, json=rows)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "[1].list_price"
    assert api.get("/v1/products", Role.ANALYST).json()["items"] == []


def test_import_duplicate_skus_and_missing_columns_are_422(api):
    text = CSV_HEADER + "B-1,Mug,kitchen,12.00,5.00,USD\nB-1,Mug,kitchen,13.00,5.00,USD\n"
    response = api.post(
        "/v1/products:import", Role.MERCHANDISER, content=text, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    assert "duplicate sku" in response.json()["detail"][0]["msg"]
    response = api.post("/v1/products:import", Role.MERCHANDISER, content="sku,name\nA,b\n",
                        headers={"Content-Type": "text/csv"})  # fmt: skip
    assert response.status_code == 422
    assert "list_price" in response.json()["detail"][0]["msg"]


def test_import_rejects_unsupported_content_and_bad_json(api):
    assert api.post("/v1/products:import", Role.MERCHANDISER, content=b"<xml/>",
                    headers={"Content-Type": "application/xml"}).status_code == 415  # fmt: skip
    response = api.post("/v1/products:import", Role.MERCHANDISER, content=b"[{",
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 422 and "invalid JSON" in response.json()["detail"][0]["msg"]
    response = api.post("/v1/products:import", Role.MERCHANDISER, content=b"\xff\xfe",
                        headers={"Content-Type": "text/csv"})  # fmt: skip
    assert response.status_code == 422


def test_product_listing_pages_by_sku_and_filters(api):
    for sku in ["C-3", "C-1", "C-2", "D-1"]:
        api.product(sku)
    api.product("D-2", active=False)
    first = api.get("/v1/products?limit=2", Role.ANALYST).json()
    assert [p["sku"] for p in first["items"]] == ["C-1", "C-2"]
    second = api.get(f"/v1/products?limit=2&after={first['next_after']}", Role.ANALYST).json()
    assert [p["sku"] for p in second["items"]] == ["C-3", "D-1"]
    third = api.get(f"/v1/products?limit=2&after={second['next_after']}", Role.ANALYST).json()
    assert [p["sku"] for p in third["items"]] == ["D-2"] and third["next_after"] is None
    active = api.get("/v1/products?active=false", Role.ANALYST).json()
    assert [p["sku"] for p in active["items"]] == ["D-2"]


def test_segments_crud_and_audit(api, sessions):
    created = api.put(
        "/v1/segments/vip", Role.MERCHANDISER, json={"name": "VIP", "description": "big spenders"}
    )
    assert created.status_code == 201
    assert (
        api.put("/v1/segments/vip", Role.MERCHANDISER, json={"name": "V.I.P."}).status_code == 200
    )
    assert api.get("/v1/segments/vip", Role.ANALYST).json()["name"] == "V.I.P."
    assert [s["key"] for s in api.get("/v1/segments", Role.ANALYST).json()] == ["vip"]
    assert api.delete("/v1/segments/vip", Role.MERCHANDISER).json()["active"] is False
    assert api.get("/v1/segments/nope", Role.ANALYST).status_code == 404
    with sessions() as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.entity == "segment").order_by(AuditEntry.id)
        ).all()
    assert actions == ["create", "update", "deactivate"]


def test_unknown_product_is_404(api):
    response = api.get("/v1/products/NOPE", Role.ANALYST)
    assert response.status_code == 404 and response.json()["detail"][0]["field"] == "sku"
