//! The `dagger` tool runs nothing from the directory it is started in, and writes its output
//! files without following symbolic links or replacing files unasked.
#![cfg(unix)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Run {
    ok: bool,
    out: String,
    err: String,
    took: Duration,
}

fn dagger_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_dagger"))
        .current_dir(cwd)
        // A stand-in peer that stops answering is stopped within a minute, not the default
        // ten; a test that sets its own deadline overrides this.
        .env("DAGGER_PEER_TIMEOUT", "60")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("runs the dagger binary");
    Run {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t.elapsed(),
    }
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dagger-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const MAP_TINY: [&str; 8] = [
    "bench", "map", "--n", "4096", "--block", "1024", "--repeat", "1",
];
const SORT_TINY: [&str; 8] = [
    "bench", "sort", "--n", "4096", "--block", "1024", "--repeat", "1",
];
const GEMM_TINY: [&str; 10] = [
    "bench", "gemm", "--n", "32", "--block", "16", "--repeat", "1", "--peer", "--json",
];

#[test]
fn bench_peers_import_nothing_from_the_working_directory() {
    let dir = scratch("cwd-import");
    let marker = dir.join("imported");
    let plant = format!(
        "open({:?}, 'w').write('imported from the working directory')\n",
        marker
    );
    for module in ["numpy.py", "dask.py", "scipy.py", "json.py", "argparse.py"] {
        std::fs::write(dir.join(module), &plant).unwrap();
    }
    // PYTHONPATH and PYTHONSTARTUP pointing at the directory are ignored as well.
    let env = [("PYTHONPATH", dir.to_str().unwrap()), ("DAGGER_PYTHON", "")];
    for args in [&MAP_TINY[..], &GEMM_TINY[..], &SORT_TINY[..]] {
        let r = dagger_in(&dir, &env, args);
        // Without numpy the peers are skipped with a note; the benchmark itself succeeds.
        assert!(r.ok, "{args:?}: {}\n{}", r.out, r.err);
        assert!(
            !marker.exists(),
            "{args:?} ran a module from the working directory:\n{}",
            r.err
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_python3_in_the_working_directory_is_never_run() {
    let dir = scratch("cwd-python");
    let marker = dir.join("ran");
    executable(
        &dir.join("python3"),
        &format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    );
    // `.` and the empty entry on PATH both mean the working directory.
    let path = format!(".::{}", std::env::var("PATH").unwrap_or_default());
    let r = dagger_in(&dir, &[("PATH", &path), ("DAGGER_PYTHON", "")], &MAP_TINY);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert!(!marker.exists(), "ran ./python3:\n{}", r.err);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_chosen_interpreter_runs_isolated() {
    let dir = scratch("interpreter");
    let fake = dir.join("fake-python");
    let argv = dir.join("argv");
    // Records its arguments and fails, so the benchmark goes on without peers.
    executable(
        &fake,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\necho 'no numpy here' >&2\nexit 1\n",
            argv.display()
        ),
    );
    let mut map = MAP_TINY.to_vec();
    map.extend(["--python", fake.to_str().unwrap()]);
    let r = dagger_in(&dir, &[], &map);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert!(
        r.err.contains("fake-python"),
        "names the interpreter: {}",
        r.err
    );
    let args = std::fs::read_to_string(&argv).expect("--python ran the given interpreter");
    // The peer serves its runs: its script comes with -c, its commands on stdin.
    assert_eq!(args.lines().take(2).collect::<Vec<_>>(), ["-I", "-c"]);
    std::fs::remove_file(&argv).unwrap();

    // A peer run once gets its script on stdin.
    let r = dagger_in(
        &dir,
        &[],
        &[
            "bench",
            "ooc",
            "--bytes",
            "1MiB",
            "--block",
            "256KiB",
            "--dir",
            dir.to_str().unwrap(),
            "--python",
            fake.to_str().unwrap(),
        ],
    );
    assert!(r.err.contains("fake-python"), "{}\n{}", r.out, r.err);
    let args = std::fs::read_to_string(&argv).expect("--python ran the given interpreter");
    assert_eq!(args.lines().take(2).collect::<Vec<_>>(), ["-I", "-"]);
    std::fs::remove_file(&argv).unwrap();

    let r = dagger_in(
        &dir,
        &[("DAGGER_PYTHON", fake.to_str().unwrap())],
        &GEMM_TINY,
    );
    assert!(r.ok, "{}\n{}", r.out, r.err);
    let args = std::fs::read_to_string(&argv).expect("DAGGER_PYTHON ran the interpreter");
    assert_eq!(args.lines().next(), Some("-I"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in for the peer script's `--serve` mode: answers "ready", then one line per
/// `run` whose GFLOP/s is the run's number times 10 (`openblas`) or 100 (`dask`), and logs
/// each command with the peer's name. With `stop_after`, it exits with an error instead of
/// answering that run.
fn serving_python(dir: &Path, log: &Path, stop_after: Option<usize>) -> PathBuf {
    let fake = dir.join("serving-python");
    let stop = stop_after.map_or(0, |k| k + 1);
    executable(
        &fake,
        &format!(
            r#"#!/bin/sh
peer=; prev=
for a in "$@"; do [ "$prev" = "--peer" ] && peer=$a; prev=$a; done
case "$peer" in dask) scale=100 ;; *) scale=10 ;; esac
echo '{{"ready": true}}'
i=0
while read line; do
  i=$((i+1))
  echo "$peer $line" >> '{log}'
  if [ "$i" = "{stop}" ]; then echo "peer gave up at run $i" >&2; exit 3; fi
  echo "{{\"secs\": 1.0, \"gflops\": $((i*scale))}}"
done
"#,
            log = log.display()
        ),
    );
    fake
}

#[test]
fn peers_run_once_after_each_of_ours_and_report_their_best() {
    let dir = scratch("serving");
    let log = dir.join("log");
    let fake = serving_python(&dir, &log, None);
    let args = [
        "bench",
        "gemm",
        "--n",
        "32",
        "--block",
        "16",
        "--repeat",
        "3",
        "--peer",
        "--json",
        "--python",
        fake.to_str().unwrap(),
    ];
    let r = dagger_in(&dir, &[], &args);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    let line: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
    assert_eq!(
        line["openblas_gflops"], 30.0,
        "the best of 10, 20, 30: {line}"
    );
    assert_eq!(line["dask_gflops"], 300.0, "{line}");
    let ratio = line["gflops"].as_f64().unwrap() / 30.0;
    assert!(
        (line["ratio"].as_f64().unwrap() - ratio).abs() < 1e-12,
        "{line}"
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log_text.lines().collect::<Vec<_>>(),
        ["openblas run", "dask run"].repeat(3),
        "one run of each peer per run of ours"
    );

    // A peer that fails part-way is named, gives no ratio, and the benchmark still ends well.
    std::fs::remove_file(&log).unwrap();
    let fake = serving_python(&dir, &log, Some(1));
    let mut args = args.to_vec();
    *args.last_mut().unwrap() = fake.to_str().unwrap();
    let r = dagger_in(&dir, &[], &args);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert!(r.err.contains("the openblas peer stopped"), "{}", r.err);
    assert!(r.err.contains("peer gave up at run 2"), "{}", r.err);
    let line: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
    assert!(
        line.get("ratio").is_none(),
        "no ratio from a failed peer: {line}"
    );
    assert!(line.get("dask_ratio").is_none(), "{line}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        4,
        "each peer is asked twice, and not again after it failed"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_peer_that_never_answers_is_stopped_at_its_deadline() {
    let dir = scratch("silent-peer");
    let fake = dir.join("silent-python");
    // Ready, then silent: it never reads its commands or answers them.
    executable(
        &fake,
        "#!/bin/sh\necho '{\"ready\": true}'\nexec sleep 120\n",
    );
    let args = [
        "bench",
        "gemm",
        "--n",
        "32",
        "--block",
        "16",
        "--repeat",
        "1",
        "--peer",
        "--json",
        "--python",
        fake.to_str().unwrap(),
    ];
    let r = dagger_in(&dir, &[("DAGGER_PEER_TIMEOUT", "1")], &args);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert!(
        r.err.contains("gave no answer within 1 s"),
        "names the deadline: {}",
        r.err
    );
    assert!(r.took < Duration::from_secs(60), "took {:?}", r.took);
    let line: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
    assert!(line.get("ratio").is_none(), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in for the `--serve` mode of the peers timed in seconds (`array.py`, `sort.py`,
/// `stencil.py`): refuses to run without `--serve` (and, given `--data`, without that file),
/// answers "ready", then one line per `run` whose seconds are 3, 1, 2, 2, … for `numpy`
/// (the peer named by `--peer`, numpy by default) and ten times that for `dask`. It logs
/// each command with the peer's name and the time it came. With `stop_after`, it exits
/// with an error instead of answering that run.
fn timing_python(dir: &Path, log: &Path, stop_after: Option<usize>) -> PathBuf {
    let fake = dir.join("timing-python");
    let stop = stop_after.map_or(0, |k| k + 1);
    executable(
        &fake,
        &format!(
            r#"#!/bin/sh
peer=numpy; serve=; data=; prev=
for a in "$@"; do
  [ "$prev" = "--peer" ] && peer=$a
  [ "$prev" = "--data" ] && data=$a
  [ "$a" = "--serve" ] && serve=1
  prev=$a
done
[ -n "$serve" ] || {{ echo "started without --serve" >&2; exit 4; }}
[ -z "$data" ] || [ -s "$data" ] || {{ echo "no data in $data" >&2; exit 5; }}
case "$peer" in dask) scale=10 ;; *) scale=1 ;; esac
echo '{{"ready": true}}'
i=0
while read line; do
  i=$((i+1))
  echo "$peer $line $(date +%s.%N)" >> '{log}'
  if [ "$i" = "{stop}" ]; then echo "peer gave up at run $i" >&2; exit 3; fi
  case $i in 1) s=3 ;; 2) s=1 ;; *) s=2 ;; esac
  echo "{{\"secs\": $((s*scale))}}"
done
"#,
            log = log.display()
        ),
    );
    fake
}

/// The log of `timing_python`: the commands with their peers, and the times they came.
fn timing_log(log: &Path) -> (Vec<String>, Vec<f64>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| {
            let (what, at) = l.rsplit_once(' ').unwrap();
            (what.to_string(), at.parse::<f64>().unwrap())
        })
        .unzip()
}

/// Asserts that a peer's runs came `at` times at least two pauses (one before our run, one
/// before the peer's) apart: runs asked one after the other, without ours between them,
/// come one pause apart.
fn assert_interleaved(at: &[f64], peers: usize) {
    for (k, w) in at.windows(peers + 1).enumerate() {
        let gap = w[peers] - w[0];
        assert!(
            gap >= 0.3 * (peers + 1) as f64 - 0.01,
            "run {} of a peer came {gap:.3} s after its previous one: {at:?}",
            k + 1
        );
    }
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect()
}

fn close(a: &serde_json::Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() <= 1e-12 * b.abs())
}

#[test]
fn stencil_and_sort_peers_alternate_with_ours_and_report_their_best() {
    let dir = scratch("timing-peers");
    let log = dir.join("log");
    // The sort's data file goes to a temporary directory of the test's own.
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let env = [("TMPDIR", tmp.to_str().unwrap())];
    let fake = timing_python(&dir, &log, None);
    let python = fake.to_str().unwrap();
    let stencil = [
        "bench", "stencil", "--n", "64", "--block", "32", "--iters", "2", "--repeat", "3",
        "--peer", "--json", "--python", python,
    ];
    let sort = [
        "bench", "sort", "--n", "4096", "--block", "1024", "--repeat", "3", "--json", "--python",
        python,
    ];
    for (args, peer_field, ours_field) in [
        (&stencil[..], "numpy_secs", "secs"),
        (&sort[..], "peer_seconds", "seconds"),
    ] {
        let r = dagger_in(&dir, &env, args);
        assert!(r.ok, "{args:?}: {}\n{}", r.out, r.err);
        let line: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
        assert_eq!(line[peer_field], 1.0, "the best of 3, 1, 2: {line}");
        let ours = line[ours_field].as_f64().unwrap();
        assert!(
            close(&line["ratio"], 1.0 / ours),
            "numpy's over ours: {line}"
        );
        let (calls, at) = timing_log(&log);
        assert_eq!(
            calls,
            ["numpy run"].repeat(3),
            "{args:?}: one per run of ours"
        );
        assert_interleaved(&at, 1);
        std::fs::remove_file(&log).unwrap();
    }
    // The sort's data file is removed once the peer has it.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("dagger-sort"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A peer that fails part-way is named, gives no ratio, and is not asked again.
    let fake = timing_python(&dir, &log, Some(1));
    let python = fake.to_str().unwrap();
    let mut stencil = stencil.to_vec();
    *stencil.last_mut().unwrap() = python;
    let mut sort = sort.to_vec();
    *sort.last_mut().unwrap() = python;
    for args in [stencil, sort] {
        let r = dagger_in(&dir, &env, &args);
        assert!(r.ok, "{args:?}: {}\n{}", r.out, r.err);
        assert!(r.err.contains("the numpy peer stopped"), "{}", r.err);
        assert!(r.err.contains("peer gave up at run 2"), "{}", r.err);
        let line: serde_json::Value = serde_json::from_str(r.out.trim()).expect(&r.out);
        assert!(
            line["ratio"].is_null(),
            "no ratio from a failed peer: {line}"
        );
        assert_eq!(timing_log(&log).0.len(), 2, "{args:?}");
        std::fs::remove_file(&log).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn map_peers_alternate_with_ours_and_report_their_best() {
    let dir = scratch("timing-map");
    let log = dir.join("log");
    let fake = timing_python(&dir, &log, None);
    let args = [
        "bench",
        "map",
        "--chain",
        "2",
        "--n",
        "4096",
        "--block",
        "1024",
        "--repeat",
        "3",
        "--json",
        "--python",
        fake.to_str().unwrap(),
    ];
    let r = dagger_in(&dir, &[], &args);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    let rows = json_lines(&r.out);
    let secs = |who: &str| {
        rows.iter()
            .find(|v| v["impl"] == who)
            .unwrap_or_else(|| panic!("no {who} row: {rows:?}"))["secs"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(secs("numpy"), 1.0, "the best of 3, 1, 2");
    assert_eq!(secs("dask"), 10.0);
    let ours = secs("dagger");
    assert!(secs("unfused") > 0.0);
    let dagger = rows.iter().find(|v| v["impl"] == "dagger").unwrap();
    assert!(
        close(&dagger["ratio"], 1.0 / ours),
        "numpy's over ours: {dagger}"
    );
    let (calls, at) = timing_log(&log);
    assert_eq!(calls, ["numpy run", "dask run"].repeat(3));
    assert_interleaved(&at, 2);
    std::fs::remove_file(&log).unwrap();

    // Peers that fail part-way give no rows and no ratio; ours are still printed.
    let fake = timing_python(&dir, &log, Some(1));
    let mut args = args.to_vec();
    *args.last_mut().unwrap() = fake.to_str().unwrap();
    let r = dagger_in(&dir, &[], &args);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert!(r.err.contains("the numpy peer stopped"), "{}", r.err);
    assert!(r.err.contains("the dask peer stopped"), "{}", r.err);
    let rows = json_lines(&r.out);
    let who: Vec<_> = rows.iter().map(|v| v["impl"].as_str().unwrap()).collect();
    assert_eq!(who, ["dagger", "unfused"]);
    assert!(rows[0].get("ratio").is_none(), "{}", rows[0]);
    assert_eq!(timing_log(&log).0.len(), 4, "each peer asked twice");
    std::fs::remove_dir_all(&dir).unwrap();
}

const OVERHEAD_TINY: [&str; 8] = [
    "bench",
    "overhead",
    "--tasks",
    "200",
    "--tree-depth",
    "6",
    "--repeat",
    "1",
];

fn trace(dir: &Path, force: bool) -> Run {
    let mut args = vec!["trace", "--out", dir.to_str().unwrap()];
    if force {
        args.push("--force");
    }
    args.extend(OVERHEAD_TINY);
    dagger_in(&std::env::temp_dir(), &[], &args)
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn trace_never_writes_through_a_symlink() {
    let base = scratch("trace-symlink");
    let out = base.join("out");
    std::fs::create_dir(&out).unwrap();
    let precious = base.join("precious.txt");
    std::fs::write(&precious, "precious").unwrap();
    symlink(&precious, out.join("gantt.svg")).unwrap();

    let r = trace(&out, false);
    assert!(!r.ok, "refuses: {}", r.out);
    assert!(
        r.err.contains("gantt.svg") && r.err.contains("--force"),
        "{}",
        r.err
    );
    assert!(r.out.is_empty(), "fails before the benchmark: {}", r.out);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");

    let r = trace(&out, true);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
    assert!(
        !is_link(&out.join("gantt.svg")),
        "the link itself was replaced"
    );
    let svg = std::fs::read_to_string(out.join("gantt.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn trace_never_creates_the_target_of_a_dangling_symlink() {
    let base = scratch("trace-dangling");
    let out = base.join("out");
    std::fs::create_dir(&out).unwrap();
    let target = base.join("created-through-the-link.json");
    symlink(&target, out.join("trace.json")).unwrap();

    let r = trace(&out, false);
    assert!(!r.ok && r.err.contains("trace.json"), "{}", r.err);
    assert!(!target.exists());

    let r = trace(&out, true);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert!(!target.exists(), "the dangling link's target was created");
    assert!(!is_link(&out.join("trace.json")));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace.json")).unwrap()).unwrap();
    assert!(json["traceEvents"].is_array());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn trace_replaces_existing_files_only_with_force() {
    let out = scratch("trace-existing");
    std::fs::write(out.join("summary.txt"), "an earlier summary").unwrap();
    let r = trace(&out, false);
    assert!(!r.ok, "{}", r.out);
    assert!(
        r.err.contains("summary.txt") && r.err.contains("pass --force"),
        "{}",
        r.err
    );
    assert_eq!(
        std::fs::read_to_string(out.join("summary.txt")).unwrap(),
        "an earlier summary"
    );
    for f in ["trace.json", "gantt.svg", "graph.dot"] {
        assert!(!out.join(f).exists(), "{f} written before refusing");
    }

    let r = trace(&out, true);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert_ne!(summary, "an earlier summary");
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn out_that_is_a_file_fails_before_any_work() {
    let base = scratch("out-file");
    let file = base.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let mut args = vec!["trace", "--out", file.to_str().unwrap()];
    // Long enough that running it first would show.
    args.extend(["bench", "overhead", "--tasks", "1000000", "--repeat", "3"]);
    let r = dagger_in(&base, &[], &args);
    assert!(!r.ok);
    assert!(r.err.contains("not a directory"), "{}", r.err);
    assert!(r.out.is_empty(), "the benchmark ran first: {}", r.out);
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);

    let r = dagger_in(
        &base,
        &[],
        &["demo", "--n", "4096", "--out", file.to_str().unwrap()],
    );
    assert!(!r.ok);
    assert!(r.err.contains("not a directory"), "{}", r.err);
    assert!(r.out.is_empty(), "the demo ran first: {}", r.out);
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn demo_never_writes_through_a_symlink() {
    let base = scratch("demo-symlink");
    let out = base.join("out");
    std::fs::create_dir(&out).unwrap();
    let precious = base.join("precious.svg");
    std::fs::write(&precious, "precious").unwrap();
    symlink(&precious, out.join("gantt.svg")).unwrap();
    let dangling = base.join("created-through-the-link.json");
    symlink(&dangling, out.join("trace.json")).unwrap();
    let demo = |force: bool| {
        let mut args = vec![
            "demo",
            "--n",
            "64",
            "--block",
            "32",
            "--threads",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        dagger_in(&base, &[], &args)
    };
    let r = demo(false);
    assert!(!r.ok && r.err.contains("--force"), "{}\n{}", r.out, r.err);
    assert!(r.out.is_empty(), "fails before the GEMM: {}", r.out);
    let r = demo(true);
    assert!(r.ok, "{}\n{}", r.out, r.err);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
    assert!(!dangling.exists());
    assert!(!is_link(&out.join("gantt.svg")) && !is_link(&out.join("trace.json")));
    std::fs::remove_dir_all(&base).unwrap();
}
