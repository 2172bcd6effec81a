//! `asepsis keys rotate-kek` and `asepsis ctl verify` on a real data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use asepsis_common::envelope::BlobRole;
use asepsis_common::policy::Decision;
use asepsis_common::provenance::EventKind;
use asepsis_store::keyring::LocalKeyring;
use asepsis_store::{Storage, signing_key};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use uuid::Uuid;

fn asepsis(data: &Path, args: &[&str]) -> Output {
    let (group, rest) = args.split_first().unwrap();
    Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .arg(group)
        .arg("--data")
        .arg(data)
        .args(rest)
        .output()
        .unwrap()
}

fn storage(data: &Path) -> Storage {
    let keyring = LocalKeyring::open_or_create(&data.join("keys/keyring.json")).unwrap();
    let root = data.join("store");
    std::fs::create_dir_all(&root).unwrap();
    let store = LocalFileSystem::new_with_prefix(&root).unwrap();
    Storage::new(Arc::new(store), Arc::new(keyring))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn rotate_kek_rewraps_and_verify_finds_the_first_broken_link() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path();

    // First use creates the keyring and signing key, private to the owner.
    let first = asepsis(data, &["keys", "rotate-kek"]);
    assert!(first.status.success(), "{first:?}");
    for file in ["keys/keyring.json", "keys/signing.pk8"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let asset = Uuid::new_v4();
    let plain = b"pixels".repeat(50_000);
    storage(data)
        .put_blob(
            asset,
            BlobRole::Original,
            std::io::Cursor::new(plain.clone()),
        )
        .await
        .unwrap();
    let signer = signing_key::load_or_create(&data.join("keys/signing.pk8")).unwrap();
    for decision in [Decision::Hold, Decision::Publish, Decision::Hold] {
        let what = EventKind::Verdict {
            decision,
            reason: "test".into(),
        };
        storage(data)
            .append_event(asset, &signer, what)
            .await
            .unwrap();
    }

    let rotated = asepsis(data, &["keys", "rotate-kek"]);
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(
        stdout(&rotated).contains("1 data keys re-wrapped"),
        "{}",
        stdout(&rotated)
    );
    // Every blob still decrypts after the rotation.
    let (_, stream) = storage(data)
        .get_blob(asset, BlobRole::Original)
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), plain);

    let asset_arg = asset.to_string();
    let ok = asepsis(data, &["ctl", "verify", &asset_arg, "--prov"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(stdout(&ok).contains("ok: 3 events"), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("wasGeneratedBy"));

    let event = data.join(format!("store/events/{asset}/{:020}", 1));
    let text = std::fs::read_to_string(&event).unwrap();
    std::fs::write(&event, text.replace("publish", "reject!")).unwrap();
    let broken = asepsis(data, &["ctl", "verify", &asset_arg]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(stdout(&broken).contains("(seq 1)"), "{}", stdout(&broken));

    let audit = asepsis(data, &["ctl", "audit"]);
    assert_eq!(stdout(&audit).matches("rotate-kek").count(), 2);
    assert!(
        stdout(&audit).contains("\"actor\":\"host:"),
        "{}",
        stdout(&audit)
    );

    // The audit log is signed and chained: intact, then an edited entry is caught.
    let ok = asepsis(data, &["ctl", "verify-audit"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(stdout(&ok).contains("ok: 2 entries"), "{}", stdout(&ok));
    let entry = data.join(format!("store/audit/{:020}", 0));
    let text = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(&entry, text.replace("rotate-kek", "keys-create")).unwrap();
    let broken = asepsis(data, &["ctl", "verify-audit"]);
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    assert!(stdout(&broken).contains("(seq 0)"), "{}", stdout(&broken));
}

#[test]
fn rights_commands_act_on_the_host_and_are_audited_as_the_host_user() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // A subject with nothing: the request is answered, changes nothing, and is audited.
    let out = asepsis(
        data,
        &["rights", "erase", "--tenant", "clinic", "patient-1"],
    );
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            answer["changed"].as_bool(),
            answer["assets_erased"].as_u64()
        ),
        (Some(false), Some(0))
    );
    let receipt = answer["receipt"].as_str().unwrap().to_owned();
    let out = asepsis(
        data,
        &["rights", "restrict", "--tenant", "clinic", "patient-1"],
    );
    assert!(out.status.success(), "{out:?}");
    let zip = data.join("export.zip");
    let out = asepsis(
        data,
        &[
            "rights",
            "export",
            "--tenant",
            "clinic",
            "patient-1",
            "-o",
            zip.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(&zip).unwrap().starts_with(b"PK"));
    let out = asepsis(
        data,
        &[
            "rights",
            "purge",
            "--dry-run",
            "--as-of",
            "2030-01-01T00:00:00Z",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = asepsis(
        data,
        &["rights", "purge", "--as-of", "2030-01-01T00:00:00Z"],
    );
    assert!(!out.status.success(), "--as-of needs --dry-run");
    let audit = stdout(&asepsis(data, &["ctl", "audit"]));
    assert!(audit.contains(&receipt), "{audit}");
    for action in ["subject-erase", "subject-restrict", "subject-export"] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(
        audit.contains("host:") && !audit.contains("patient-1"),
        "{audit}"
    );
}
