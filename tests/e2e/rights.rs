//! The privacy officer's desk over HTTP: restrict and lift, object, rectify, export (unzipped
//! by Python's zipfile, every hash checked against the manifest), the accounting of
//! disclosures, and erasure — `/media` 404 before each answer, the store read directly after.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Ctx;
use crate::support::*;

async fn post(c: &Ctx, key: &str, path: &str, body: Value) -> Value {
    let (status, body) = c.d.post_json(key, path, body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn approve(c: &Ctx, asset: &str) {
    let path = format!("/v1/assets/{asset}/review");
    post(c, &c.reviewer, &path, json!({"decision": "approve"})).await;
}

pub async fn a_subjects_rights_work_end_to_end(c: &Ctx) {
    let Ctx {
        d,
        uploader,
        officer,
        canary,
        ..
    } = c;
    let subject = format!("{canary}-rights");
    // Every route is the privacy officer's alone.
    let path = format!("/v1/subjects/{subject}/erase");
    assert_eq!(
        d.post_json(uploader, &path, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    let bad = "/v1/subjects/%20/restrict";
    assert_eq!(
        d.post_json(officer, bad, json!({})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // A subject with one published photo (the face-free one; `up` scans, the separate
    // worker holds it for review without a model, so a reviewer publishes it there).
    let mut terms = consent_body("identifiable", canary);
    terms["subject_ref"] = json!(subject);
    let (status, made) = d.post_json(uploader, "/v1/consents", terms).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let consent = made["id"].as_str().unwrap().to_owned();
    let asset = d
        .upload_id(
            uploader,
            corpus("jpeg/ianare-DSCN0010.jpg"),
            "x.jpg",
            &consent,
        )
        .await;
    let settled = d.settled(uploader, &asset).await;
    if settled["state"] == "held" {
        approve(c, &asset).await;
    }
    assert_eq!(d.media(&asset, None).await.0, StatusCode::OK);

    // Restrict: not served at once; an upload is accepted and frozen; lifted, both return.
    let r = post(
        c,
        officer,
        &format!("/v1/subjects/{subject}/restrict"),
        json!({}),
    )
    .await;
    assert_eq!(
        (r["restricted"].as_bool(), r["changed"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(d.media(&asset, None).await.0, StatusCode::NOT_FOUND);
    let frozen = d
        .upload_id(
            uploader,
            corpus("jpeg/ianare-DSCN0010.jpg"),
            "y.jpg",
            &consent,
        )
        .await;
    let status = d
        .get_json(uploader, &format!("/v1/assets/{frozen}"))
        .await
        .1;
    assert_eq!(status["state"], "restricted", "{status}");
    let again = post(
        c,
        officer,
        &format!("/v1/subjects/{subject}/restrict"),
        json!({}),
    )
    .await;
    assert_eq!(again["changed"], false);
    let lifted = post(
        c,
        officer,
        &format!("/v1/subjects/{subject}/unrestrict"),
        json!({}),
    )
    .await;
    assert_eq!(lifted["requeued"], 1, "{lifted}");
    assert_eq!(d.media(&asset, None).await.0, StatusCode::OK);
    let settled = d.settled(uploader, &frozen).await;
    assert!(
        ["published", "held"].contains(&settled["state"].as_str().unwrap()),
        "{settled}"
    );

    // Object to a purpose no consent names: 422 naming its position, never its text.
    let path = format!("/v1/subjects/{subject}/object");
    let (status, body) = d
        .post_json(officer, &path, json!({"purposes": ["nothing-like-it"]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("purposes[0]"),
        "{body}"
    );

    // Rectify narrowing to internal use: 404 at once; the record keeps its history; a
    // widening does not republish.
    let rectify = |scope: &'static str| {
        let url = format!("{}/v1/consents/{consent}", d.base);
        d.client
            .patch(url)
            .bearer_auth(officer)
            .json(&json!({"scope": scope}))
            .send()
    };
    let res = rectify("internal").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["outcome"]["assets_unpublished"].as_u64().unwrap() >= 1,
        "{body}"
    );
    assert_eq!(d.media(&asset, None).await.0, StatusCode::NOT_FOUND);
    let (_, record) = d
        .get_json(officer, &format!("/v1/consents/{consent}"))
        .await;
    assert_eq!(
        (
            record["version"].as_u64(),
            record["history"][0]["terms"]["scope"].as_str()
        ),
        (Some(2), Some("identifiable")),
        "{record}"
    );
    assert_eq!(
        rectify("identifiable").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(d.media(&asset, None).await.0, StatusCode::NOT_FOUND);
    // A reviewer decides again: published once more.
    approve(c, &asset).await;
    assert_eq!(d.media(&asset, None).await.0, StatusCode::OK);

    // Export: a ZIP that Python's zipfile reads, every file matching the manifest's hash.
    let res = d
        .client
        .post(format!("{}/v1/subjects/{subject}/export", d.base))
        .bearer_auth(officer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let zip = res.bytes().await.unwrap();
    let path = d.data.path().join("export.zip");
    std::fs::write(&path, &zip).unwrap();
    let check = std::process::Command::new("python3")
        .args(["-c", CHECK_ZIP])
        .arg(&path)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let report = String::from_utf8(check.stdout).unwrap();
    assert!(
        report.contains(&format!("assets/{asset}/original.jpg")),
        "{report}"
    );
    assert!(
        report.contains(&format!("assets/{asset}/published.jpg")),
        "{report}"
    );

    // The accounting: the publications and the export, with dates.
    let (status, disclosures) = d
        .get_json(officer, &format!("/v1/subjects/{subject}/disclosures"))
        .await;
    assert_eq!(status, StatusCode::OK, "{disclosures}");
    let recipients: Vec<&str> = disclosures
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["recipient"].as_str().unwrap())
        .collect();
    assert!(
        recipients.contains(&"website") && recipients.contains(&"subject"),
        "{disclosures}"
    );
    let (status, _) = d
        .get_json(
            officer,
            &format!("/v1/subjects/{subject}/disclosures?from=yesterday"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Erase: /media 404 before the answer, uploads naming the consent 422, repeat says so.
    let erased = post(
        c,
        officer,
        &format!("/v1/subjects/{subject}/erase"),
        json!({}),
    )
    .await;
    assert_eq!(
        (
            erased["assets_erased"].as_u64(),
            erased["consents_erased"].as_u64()
        ),
        (Some(2), Some(1)),
        "{erased}"
    );
    assert_eq!(d.media(&asset, None).await.0, StatusCode::NOT_FOUND);
    let (status, body) = d
        .upload(
            uploader,
            corpus("png/pillow-hopper.png"),
            "z.png",
            &consent,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("erased"), "{body}");
    let again = post(
        c,
        officer,
        &format!("/v1/subjects/{subject}/erase"),
        json!({}),
    )
    .await;
    assert_eq!(
        (again["changed"].as_bool(), again["assets_erased"].as_u64()),
        (Some(false), Some(0))
    );
    let (_, tombstone) = d
        .get_json(officer, &format!("/v1/consents/{consent}"))
        .await;
    assert!(tombstone["erased_at"].is_string(), "{tombstone}");
    assert!(
        !tombstone.to_string().contains(canary.as_str()),
        "{tombstone}"
    );
    // The store itself holds no blob or key of either asset any more.
    let keys = d.store_keys().await;
    for id in [&asset, &frozen] {
        assert!(
            !keys
                .iter()
                .any(|k| (k.starts_with("blobs/") || k.starts_with("keys/"))
                    && k.contains(id.as_str())),
            "{keys:?}"
        );
    }
    // Receipts are in the audit log.
    let (_, audit) = d.get_json(officer, "/v1/audit").await;
    let text = audit.to_string();
    for receipt in [&erased["receipt"], &again["receipt"], &r["receipt"]] {
        assert!(text.contains(receipt.as_str().unwrap()), "{receipt}");
    }
}

/// Read the ZIP with Python's zipfile; check each manifest file's SHA-256 and size, the
/// PROV documents parse; print the names.
const CHECK_ZIP: &str = r#"
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
m = json.loads(z.read("manifest.json"))
names = set(z.namelist())
assert names == {f["path"] for f in m["files"]} | {"manifest.json"}, names
for f in m["files"]:
    body = z.read(f["path"])
    assert hashlib.sha256(body).hexdigest() == f["sha256"], f["path"]
    assert len(body) == f["size_bytes"], f["path"]
    if f["path"].endswith("provenance.json"):
        assert json.loads(body)["prov"]["activity"]
json.loads(z.read("disclosures.json"))
print("\n".join(sorted(names)))
"#;
