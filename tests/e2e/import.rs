//! `asepsis import` as a hospital's operator runs it: the real binary against a real
//! `asepsis up`, on corpus files copied into a temporary folder (or ZIP). Assets are counted
//! in the server's own store, never by the importer's word.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Proc, logged_addr};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");
const FORMATS: &[&str] = &["jpeg", "png", "webp", "tiff", "heic", "avif"];

struct Server {
    proc: Proc,
    addr: String,
}

/// `asepsis up` on `addr` (port 0: any), with a short request timeout so that an upload
/// cut off by a killed server frees its Idempotency-Key within seconds.
fn start_up(data: &Path, addr: &str) -> Server {
    let timeout = (
        "ASEPSIS__SERVER__REQUEST_TIMEOUT_SECS".to_owned(),
        "5".to_owned(),
    );
    let proc = Proc::start(
        &["up", "--listen", addr, "--data", data.to_str().unwrap()],
        &[timeout],
    );
    let addr = logged_addr(&proc.wait_for_line("listening addr="));
    Server { proc, addr }
}

fn uploader_key(data: &Path, tenant: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["keys", "--data"])
        .arg(data)
        .args(["create", "--tenant", tenant, "--role", "uploader"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Objects under `prefix` in the server's local store.
fn stored(data: &Path, prefix: &str) -> usize {
    match std::fs::read_dir(data.join("store").join(prefix)) {
        Ok(entries) => entries.count(),
        Err(_) => 0,
    }
}

/// Corpus images (not malformed, not DICOM) as `(format/name, path)`, `n` of them.
fn corpus_images(n: usize) -> Vec<(String, PathBuf)> {
    let manifest = std::fs::read_to_string(format!("{CORPUS}/MANIFEST.tsv")).unwrap();
    let mut images: Vec<(String, PathBuf)> = manifest
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let path = cols.next()?;
            let format = cols.next()?;
            FORMATS
                .contains(&format)
                .then(|| (path.to_owned(), Path::new(CORPUS).join(path)))
        })
        .collect();
    images.truncate(n);
    assert_eq!(images.len(), n, "the corpus has {n} images");
    images
}

const INLINE: &str = "file,subject_ref,obtained_by,obtained_at,method,scope,purposes,jurisdiction,licence_version,minor";

fn inline_row(file: &str, subject: usize) -> String {
    format!(
        "{file},pseudo-{subject},dr-k,2026-11-01T09:00:00Z,written,identifiable,teaching;publication,US-CA,v3,false"
    )
}

/// The importer, its stderr captured.
fn import(source: &Path, manifest: &Path, server: &str, key: &str, extra: &[&str]) -> Proc {
    let url = format!("http://{server}");
    let mut args = vec![
        "import",
        source.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--url",
        &url,
    ];
    args.extend(extra);
    Proc::start(&args, &[("ASEPSIS_API_KEY".to_owned(), key.to_owned())])
}

/// Wait for the process to exit; its status code, with every line it wrote added to `seen`.
fn finish(mut proc: Proc, seen: &mut Vec<String>) -> i32 {
    let code = proc.child.wait().unwrap().code().unwrap_or(-1);
    for _ in proc.lines.iter() {} // until its stderr is read to the end
    seen.extend(proc.logs.lock().unwrap().iter().cloned());
    code
}

/// `GET path` with the key, as JSON.
fn get_json(addr: &str, key: &str, path: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("http://{addr}{path}");
        let res = reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        res.json().await.unwrap()
    })
}

#[test]
fn an_import_killed_twice_and_rerun_makes_one_asset_per_row() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut server = start_up(data.path(), "127.0.0.1:0");
    let key = uploader_key(data.path(), "radiology");
    let files = work.path().join("export");
    let images = corpus_images(40);
    let mut manifest = vec![INLINE.to_owned()];
    for (i, (name, path)) in images.iter().enumerate() {
        let dest = files.join("scans").join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(path, &dest).unwrap();
        manifest.push(inline_row(&format!("scans/{name}"), i % 3));
    }
    let manifest_path = work.path().join("manifest.csv");
    std::fs::write(&manifest_path, manifest.join("\n") + "\n").unwrap();
    let mut seen = Vec::new();

    // 0. Ctrl-C: the uploads in flight finish, the state is saved, the way to resume printed.
    let interrupted = import(&files, &manifest_path, &server.addr, &key, &[]);
    interrupted.wait_for_line("files 3/40");
    let sigint = Command::new("kill")
        .args(["-INT", &interrupted.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sigint.success());
    assert_eq!(finish(interrupted, &mut seen), 130, "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("Run the same command again to resume")),
        "{seen:#?}"
    );

    // 1. The importer is killed (SIGKILL) a quarter of the way in.
    let mut first = import(&files, &manifest_path, &server.addr, &key, &[]);
    first.wait_for_line("files 10/40");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", first.child.id())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&key),
        "the key is never on the command line"
    );
    first.kill();
    let uploaded = stored(data.path(), "events");
    assert!(
        (10..40).contains(&uploaded),
        "{uploaded} uploaded before the kill"
    );

    // 2. Run again; the server is killed midway and restarted on the same address.
    let second = import(&files, &manifest_path, &server.addr, &key, &[]);
    second.wait_for_line("resuming");
    second.wait_for_line("files 25/40");
    server.proc.kill();
    let mut server_logs: Vec<String> = server.proc.logs.lock().unwrap().clone();
    server = start_up(data.path(), &server.addr);
    let code = finish(second, &mut seen);
    assert_eq!(code, 0, "{seen:#?}");

    // 3. Run once more, following the batch until every file has settled.
    let report = work.path().join("report.json");
    let report_arg = report.to_str().unwrap();
    let third = import(
        &files,
        &manifest_path,
        &server.addr,
        &key,
        &["--wait", "--report", report_arg],
    );
    assert_eq!(finish(third, &mut seen), 0, "{seen:#?}");

    assert_eq!(
        stored(data.path(), "events"),
        40,
        "one asset per row, whatever was killed"
    );
    assert_eq!(stored(data.path(), "batches"), 1, "one batch");
    assert_eq!(
        stored(data.path(), "consents"),
        3,
        "one consent per subject"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let fates = report["rows"].as_array().unwrap();
    assert_eq!(fates.len(), 40);
    let batch = seen
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|rest| rest.split(':').next())
        .unwrap();
    let tally = get_json(&server.addr, &key, &format!("/v1/batches/{batch}"));
    assert_eq!(tally["assets"], 40, "{tally}");
    assert_eq!(tally["done"], true, "{tally}");
    assert_eq!(
        tally["counts"], report["summary"],
        "the batch and the report agree"
    );
    let mut assets: Vec<&str> = fates
        .iter()
        .map(|f| f["asset_id"].as_str().unwrap())
        .collect();
    assets.sort_unstable();
    assets.dedup();
    assert_eq!(assets.len(), 40, "40 distinct assets");
    for fate in fates {
        let outcome = fate["state"].as_str().unwrap();
        assert!(["published", "held"].contains(&outcome), "{fate}");
    }
    server.proc.kill();
    server_logs.extend(server.proc.logs.lock().unwrap().iter().cloned());
    for line in seen.iter().chain(&server_logs) {
        assert!(!line.contains(&key), "the key in a log line: {line}");
        assert!(
            !line.contains("ianare"),
            "a file name in a log line: {line}"
        );
        assert!(!line.contains("pseudo-"), "a subject in a log line: {line}");
    }
}

#[test]
fn every_problem_of_a_manifest_is_named_before_anything_is_sent() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut server = start_up(data.path(), "127.0.0.1:0");
    let key = uploader_key(data.path(), "clinic");
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let [(_, jpeg), (_, png)] = <[_; 2]>::try_from(corpus_images(2)).unwrap();
    std::fs::copy(&jpeg, files.join("good.jpg")).unwrap();
    std::fs::copy(&png, files.join("also-good.png")).unwrap();
    std::fs::write(files.join("notes.txt"), "not an image").unwrap();
    let dicom = std::fs::read_dir(format!("{CORPUS}/dicom"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "dcm"))
        .unwrap();
    std::fs::copy(dicom, files.join("scan.dcm")).unwrap();
    std::os::unix::fs::symlink(&jpeg, files.join("outside.jpg")).unwrap();
    let unknown = uuid::Uuid::new_v4();
    let rows = [
        INLINE.to_owned(),
        inline_row("good.jpg", 1),      // 2: fine
        inline_row("../escape.jpg", 1), // 3
        inline_row("missing.jpg", 1),   // 4
        inline_row("scan.dcm", 1),      // 5: fine (DICOM is accepted)
        inline_row("notes.txt", 1),     // 6
        inline_row("outside.jpg", 1),   // 7
        inline_row("also-good.png", 1).replace("2026-11-01", "2099-11-01"), // 8
        inline_row("good.jpg", 2),      // 9
    ];
    let manifest = work.path().join("m.csv");
    std::fs::write(&manifest, rows.join("\n") + "\n").unwrap();
    let mut seen = Vec::new();
    let child = import(&files, &manifest, &server.addr, &key, &[]);
    assert_eq!(finish(child, &mut seen), 2, "{seen:#?}");
    let text = seen.join("\n");
    for expected in [
        "row 3, file: ",
        "row 4, file: no such file",
        "row 6, file: not a supported image",
        "row 7, file: a symlink leads out",
        "row 8, obtained_at: ",
        "row 9, file: the same file as row 2",
        "nothing was uploaded",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    assert!(
        !text.contains("row 2,") && !text.contains("row 5,"),
        "{text}"
    );
    for name in [
        "escape", "missing", "notes", "outside", "scan.dcm", "pseudo-",
    ] {
        assert!(!text.contains(name), "{name} printed: {text}");
    }
    assert_eq!(stored(data.path(), "batches"), 0, "nothing sent");

    // A consent named by id must exist; --skip-invalid imports the valid rows, reports all.
    let mut rows = rows.to_vec();
    rows.push(format!("also-good.png,{unknown}"));
    let mut header = String::from("file,consent_id");
    for column in INLINE.split(',').skip(1) {
        header.push(',');
        header.push_str(column);
    }
    let rows: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| match i {
            0 => header.clone(),
            9 => format!("also-good.png,{unknown}{}", ",".repeat(9)),
            _ => {
                let (file, rest) = row.split_once(',').unwrap();
                format!("{file},,{rest}")
            }
        })
        .collect();
    std::fs::write(&manifest, rows.join("\n") + "\n").unwrap();
    let report = work.path().join("report.csv");
    let child = import(
        &files,
        &manifest,
        &server.addr,
        &key,
        &["--skip-invalid", "--report", report.to_str().unwrap()],
    );
    let mut seen = Vec::new();
    assert_eq!(finish(child, &mut seen), 1, "{seen:#?}");
    let text = seen.join("\n");
    assert!(
        text.contains("row 10, consent_id: no such consent"),
        "{text}"
    );
    // Rows 2 (a JPEG) and 5 (a DICOM scan) are the valid ones.
    assert_eq!(stored(data.path(), "events"), 2, "{text}");
    let report = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        report.lines().count(),
        1 + 9 + 1,
        "header, 9 rows, summary: {report}"
    );
    let good = report
        .lines()
        .find(|l| l.starts_with("2,good.jpg,"))
        .unwrap();
    let cells: Vec<&str> = good.split(',').collect();
    assert!(uuid::Uuid::parse_str(cells[3]).is_ok(), "{good}");
    assert!(
        ["received", "processing", "published", "held"].contains(&cells[4]),
        "{good}"
    );
    let scan = report
        .lines()
        .find(|l| l.starts_with("5,scan.dcm,"))
        .unwrap();
    assert!(
        uuid::Uuid::parse_str(scan.split(',').nth(3).unwrap()).is_ok(),
        "{scan}"
    );
    let unknown_row = report.lines().find(|l| l.starts_with("10,")).unwrap();
    assert!(
        unknown_row.starts_with("10,also-good.png,,,invalid,"),
        "{report}"
    );
    assert!(
        unknown_row.contains("consent_id: no such consent"),
        "{report}"
    );
    assert!(
        report.lines().last().unwrap().starts_with("summary,"),
        "{report}"
    );
    server.proc.kill();
}

/// Write a ZIP with Python's zipfile: `(name, bytes or a path to read, unix mode)`.
fn zip(path: &Path, entries: &[(&str, &str, u32)]) {
    let spec: Vec<String> = entries
        .iter()
        .map(|(name, content, mode)| format!("({name:?}, {content:?}, {mode})"))
        .collect();
    let script = format!(
        r#"
import zipfile, warnings
warnings.simplefilter("ignore")
with zipfile.ZipFile({path:?}, "w", zipfile.ZIP_DEFLATED) as z:
    for name, content, mode in [{entries}]:
        if content == "BOMB":
            data = b"\xff\xd8\xff\xe0" + bytes(100 * 1024 * 1024)
        elif content.startswith("/"):
            data = open(content, "rb").read()
        else:
            data = content.encode()
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = mode << 16
        z.writestr(info, data)
"#,
        path = path.to_str().unwrap(),
        entries = spec.join(", ")
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_zip_is_read_in_place_and_its_hostile_entries_refused() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut server = start_up(data.path(), "127.0.0.1:0");
    let key = uploader_key(data.path(), "clinic");
    let images = corpus_images(3);
    let path_of = |i: usize| images[i].1.to_str().unwrap().to_owned();
    let (a, b, c) = (path_of(0), path_of(1), path_of(2));
    let manifest = work.path().join("m.csv");
    let rows = [
        INLINE.to_owned(),
        inline_row("export/one.jpg", 1),
        inline_row("export/two.jpg", 1),
        inline_row("export/three.jpg", 2),
    ];
    std::fs::write(&manifest, rows.join("\n") + "\n").unwrap();
    let regular = 0o100_644;

    let hostile = work.path().join("hostile.zip");
    zip(
        &hostile,
        &[
            ("export/one.jpg", &a, regular),
            ("../escape.jpg", &b, regular),
            ("/etc/absolute.jpg", &b, regular),
            ("export/link.jpg", "../../etc/passwd", 0o120_777),
            ("export/one.jpg", &c, regular),
        ],
    );
    let mut seen = Vec::new();
    let child = import(&hostile, &manifest, &server.addr, &key, &[]);
    assert_eq!(finish(child, &mut seen), 2, "{seen:#?}");
    let text = seen.join("\n");
    for expected in [
        "zip entry 1: ",
        "zip entry 2: ",
        "zip entry 3: a symlink",
        "zip entry 4: the same name as entry 0",
        "the source is refused",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    let bomb = work.path().join("bomb.zip");
    zip(
        &bomb,
        &[
            ("export/one.jpg", &a, regular),
            ("export/two.jpg", "BOMB", regular),
            ("export/three.jpg", &c, regular),
        ],
    );
    let mut seen = Vec::new();
    let child = import(&bomb, &manifest, &server.addr, &key, &[]);
    assert_eq!(finish(child, &mut seen), 2, "{seen:#?}");
    let text = seen.join("\n");
    assert!(
        text.contains("row 3, file: the ZIP entry inflates past"),
        "{text}"
    );
    assert_eq!(stored(data.path(), "batches"), 0, "nothing sent");

    let good = work.path().join("good.zip");
    zip(
        &good,
        &[
            ("export/", "", 0o040_755),
            ("export/one.jpg", &a, regular),
            ("export/two.jpg", &b, regular),
            ("export/three.jpg", &c, regular),
        ],
    );
    let mut seen = Vec::new();
    let child = import(&good, &manifest, &server.addr, &key, &[]);
    assert_eq!(finish(child, &mut seen), 0, "{seen:#?}");
    assert_eq!(stored(data.path(), "events"), 3);
    server.proc.kill();

    // Nothing was unpacked: the work folder holds what the test wrote and the import's own
    // state file and report, and no entry landed anywhere by its name.
    let mut names: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected = [
        "bomb.zip",
        "good.zip",
        "hostile.zip",
        "m.csv",
        "m.csv.import-state.jsonl",
        "m.csv.report.csv",
    ];
    assert_eq!(names, expected);
    assert!(!work.path().parent().unwrap().join("escape.jpg").exists());
    assert!(!Path::new("/etc/absolute.jpg").exists());
}
