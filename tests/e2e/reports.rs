//! Daily reports: upload, replace (revision 2), read back.

use posbridge_harness::{both_backends, parse_rfc3339, Backend};
use serde_json::json;

use crate::report_body;

async fn daily_report(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let bakery = srv.setup_tenant("bakery").await;
    let till = srv.terminal(&kitchen);

    till.get("/reports/daily/2026-11-20")
        .await
        .expect_error(404, "report_not_found");

    let first = report_body("2026-11-20", 120_000, "first upload");
    let created = till.post("/reports/daily", &first).await;
    let r1 = created.expect(201).clone();
    assert_eq!(r1["report_date"], "2026-11-20");
    assert_eq!(r1["revision"], 1);
    assert_eq!(r1["total_sales"], 120_000);
    assert_eq!(r1["net_sales"], 119_250);
    assert_eq!(r1["top_items"], first["top_items"]);
    assert_eq!(r1["busy_hours"], first["busy_hours"]);
    assert_eq!(r1["staff_shifts"], first["staff_shifts"]);
    assert_eq!(r1["notes"], "first upload");
    parse_rfc3339(r1["uploaded_at"].as_str().expect("uploaded_at"));
    parse_rfc3339(r1["updated_at"].as_str().expect("updated_at"));

    let got = till.get("/reports/daily/2026-11-20").await;
    assert_eq!(got.expect(200), &r1, "GET returns the stored report");

    // The terminal corrects its report: same date → 200, revision 2.
    let mut corrected = report_body("2026-11-20", 125_000, "corrected: missed a card batch");
    corrected["top_items"] = json!([{"name": "Fries", "quantity": 50, "revenue": 19_950}]);
    let replaced = srv
        .manager(&kitchen)
        .post("/reports/daily", &corrected)
        .await;
    let r2 = replaced.expect(200).clone();
    assert_eq!(r2["revision"], 2);
    assert_eq!(r2["total_sales"], 125_000);
    assert_eq!(r2["notes"], "corrected: missed a card batch");
    assert_eq!(r2["top_items"], corrected["top_items"]);
    let updated = parse_rfc3339(r2["updated_at"].as_str().expect("updated_at"));
    assert!(updated >= parse_rfc3339(r1["updated_at"].as_str().expect("updated_at")));

    let got = till.get("/reports/daily/2026-11-20").await;
    let stored = got.expect(200);
    assert_eq!(stored, &r2);
    assert_eq!(stored["cash_sales"], 31_250);

    // Another date is independent.
    let other = till
        .post("/reports/daily", &report_body("2026-11-21", 1_000, ""))
        .await;
    assert_eq!(other.expect(201)["revision"], 1);
    assert_eq!(
        till.get("/reports/daily/2026-11-20").await.expect(200)["revision"],
        2
    );
    till.get("/reports/daily/2026-11-22")
        .await
        .expect_error(404, "report_not_found");

    // An impossible date is refused.
    till.post("/reports/daily", &report_body("2026-13-45", 1_000, ""))
        .await
        .expect_error_status(422);
    let bad = till.get("/reports/daily/2026-13-45").await;
    assert!(matches!(bad.status, 404 | 422), "{}", bad.text);
    bad.expect_error_status(bad.status);

    // Other tenants neither see nor share it.
    srv.tenant_client("kitchen", &bakery.terminal.key)
        .get("/reports/daily/2026-11-20")
        .await
        .expect_error(403, "forbidden");
    srv.terminal(&bakery)
        .get("/reports/daily/2026-11-20")
        .await
        .expect_error(404, "report_not_found");
}

both_backends!(daily_report);
