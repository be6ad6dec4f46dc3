//! The `dagger` tool, run as a user would.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

fn dagger(args: &[&str]) -> (bool, String, String) {
    output_of(Command::new(env!("CARGO_BIN_EXE_dagger")).args(args))
}

/// `dagger info --threads 1`, with `var` set to `value` (or removed), in `--json` or not.
fn info_with(var: &str, value: Option<&str>, json: bool) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dagger"));
    c.args(["info", "--threads", "1"]);
    match value {
        Some(v) => c.env(var, v),
        None => c.env_remove(var),
    };
    if json {
        c.arg("--json");
    }
    output_of(&mut c)
}

/// Runs `c`: whether it succeeded, its stdout and its stderr.
fn output_of(c: &mut Command) -> (bool, String, String) {
    let out = c.output().expect("runs the dagger binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn info_json_lists_every_processor() {
    let (ok, out, err) = dagger(&["info", "--json", "--threads", "3"]);
    assert!(ok, "{err}");
    let procs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let threads: Vec<_> = procs.iter().filter(|p| p["kind"] == "thread").collect();
    assert_eq!(threads.len(), 3);
    assert!(threads
        .iter()
        .all(|t| t["default_enabled"] == true && t["id"].is_string()));
    assert_eq!(procs.iter().filter(|p| p["kind"] == "os").count(), 1);
    for g in procs.iter().filter(|p| p["kind"] == "wgpu") {
        for key in [
            "backend",
            "adapter",
            "device_type",
            "software",
            "shader_f64",
            "max_storage_binding_size",
        ] {
            assert!(!g["gpu"][key].is_null(), "gpu entry has {key}: {g}");
        }
    }
}

#[test]
fn info_shows_the_memory_limit_from_the_environment() {
    let run = |limit: &str, json: bool| info_with("DAGGER_MEMORY_LIMIT", Some(limit), json);
    let (ok, out, err) = run("3GiB", false);
    assert!(ok, "{err}");
    assert!(
        out.contains("beyond 3.00 GiB spill to disk (from DAGGER_MEMORY_LIMIT)"),
        "{out}"
    );
    let (ok, out, err) = run("3GiB", true);
    assert!(ok, "{err}");
    let os: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|p| p["kind"] == "os")
        .collect();
    assert_eq!(os[0]["memory_limit_bytes"], 3u64 << 30, "{out}");
    let (ok, out, _) = run("none", false);
    assert!(ok && out.contains("host memory: no limit"), "{out}");
    let (ok, _, err) = run("lots", false);
    assert!(!ok, "an invalid limit is an error");
    assert!(
        err.contains("DAGGER_MEMORY_LIMIT") && err.contains("4GiB"),
        "{err}"
    );
}

#[test]
fn the_cpu_gemm_kernel_can_be_named_and_a_wrong_name_says_what_to_use() {
    let run = |kernel: Option<&str>, json: bool| info_with("DAGGER_CPU_GEMM", kernel, json);
    let (ok, out, err) = run(None, false);
    assert!(ok, "{err}");
    let chosen = dagger_cpu::gemm_kernel().name();
    assert!(
        out.contains(&format!("cpu kernels: gemm {chosen} (chosen for this CPU;")),
        "{out}"
    );
    let (ok, out, err) = run(Some("faer"), false);
    assert!(ok, "{err}");
    assert!(
        out.contains("cpu kernels: gemm faer (from DAGGER_CPU_GEMM;"),
        "{out}"
    );
    let (ok, out, err) = run(Some("faer"), true);
    assert!(ok, "{err}");
    assert!(out.contains(r#""cpu_gemm_kernel":"faer""#), "{out}");
    if dagger_cpu::GemmKernel::Packed.available() {
        let (ok, out, err) = run(Some("avx512"), false);
        assert!(ok, "{err}");
        assert!(out.contains("cpu kernels: gemm avx512 (from"), "{out}");
    }
    let (ok, _, err) = run(Some("blis"), false);
    assert!(!ok, "an unknown kernel is an error");
    assert!(
        err.contains("DAGGER_CPU_GEMM") && err.contains("use avx512, faer or openblas"),
        "{err}"
    );
    if !dagger_cpu::GemmKernel::OpenBlas.available() {
        let (ok, _, err) = run(Some("openblas"), false);
        assert!(!ok, "a kernel this build lacks is an error");
        assert!(err.contains("openblas cargo feature"), "{err}");
    }
}

#[test]
fn bench_overhead_json_has_three_shapes() {
    let (ok, out, err) = dagger(&[
        "bench",
        "overhead",
        "--tasks",
        "2000",
        "--tree-depth",
        "10",
        "--repeat",
        "1",
        "--json",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shapes: Vec<_> = lines
        .iter()
        .map(|l| l["shape"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shapes, ["independent", "chain", "tree"]);
    for l in &lines {
        assert_eq!(l["bench"], "overhead");
        assert!(l["us_per_task"].as_f64().unwrap() > 0.0);
        assert!(l["tasks"].as_u64().unwrap() >= 2000);
    }
}

/// Without `mpirun` the workers are threads of the process; the figures are all there and
/// consistent.
#[test]
fn bench_remote_json_reports_latency_throughput_and_move() {
    let (ok, out, err) = dagger(&[
        "bench",
        "remote",
        "--latency-tasks",
        "200",
        "--tasks",
        "500",
        "--move-mib",
        "1",
        "--json",
    ]);
    assert!(ok, "{err}");
    let l: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(l["bench"], "remote");
    assert_eq!(l["transport"], "in-process");
    let f = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{k} in {l}"));
    assert!(f("latency_us") > 0.0 && f("tasks_per_s") > 0.0 && f("move_gbps") > 0.0);
    let (median, p99) = (f("latency_median_us"), f("latency_p99_us"));
    assert!(0.0 < median && median <= p99, "{l}");
    // At least half of the 200 round trips take the median or longer.
    assert!(f("latency_us") * 200.0 >= median * 100.0, "{l}");
    assert!(
        l["mpi_latency_us"].is_null(),
        "no raw MPI without mpirun: {l}"
    );
}

/// Under mpirun, a build without the `mpi` feature says what to build instead of timing
/// each rank alone and calling that remote.
#[cfg(not(feature = "mpi"))]
#[test]
fn bench_remote_under_mpirun_without_the_mpi_feature_says_how_to_build_it() {
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let (ok, out, err) = output_of(
            Command::new(env!("CARGO_BIN_EXE_dagger"))
                .args(["bench", "remote", "--latency-tasks", "10", "--json"])
                .env(var, "2"),
        );
        assert!(!ok, "{var}: {out}");
        assert!(out.is_empty(), "{var}: nothing measured: {out}");
        assert!(
            err.contains("built without the `mpi` feature")
                && err.contains("cargo build --release --features mpi"),
            "{var}: {err}"
        );
    }
}

#[test]
fn demo_checks_its_result_and_writes_a_gantt_chart() {
    let dir = std::env::temp_dir().join(format!("dagger-demo-{}", std::process::id()));
    let (ok, out, err) = dagger(&[
        "demo",
        "--n",
        "256",
        "--block",
        "64",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("tiles per processor"), "{out}");
    assert!(out.contains("GFLOP/s"), "{out}");
    let svg = std::fs::read_to_string(dir.join("gantt.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("gemm"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With the software GPUs offered, every GPU either ran tiles or the demo says why not, with
/// the cost model's estimates.
#[test]
fn demo_explains_where_the_tiles_went() {
    let ctx = dagger::Context::builder().threads(1).build().unwrap();
    if common::gpus_or_skip(&ctx, "the demo's placement explanation").is_empty() {
        return;
    }
    drop(ctx);
    let dir = std::env::temp_dir().join(format!("dagger-demo-gpu-{}", std::process::id()));
    let (ok, out, err) = dagger(&[
        "demo",
        "--gpu",
        "--n",
        "256",
        "--block",
        "64",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let svg = std::fs::read_to_string(dir.join("gantt.svg")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    assert!(ok, "{out}\n{err}");
    let offered: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains(" processors:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    let gpus: Vec<&&str> = offered.iter().filter(|l| l.starts_with("gpu ")).collect();
    assert!(!gpus.is_empty(), "--gpu offers the software GPUs:\n{out}");
    // The chart has a lane for every processor offered, labelled in full (the backend
    // included), whether it ran tiles or not; idle lanes say so.
    for p in &offered {
        let description = p.rsplit_once(" [").map_or(*p, |(d, _)| d);
        assert!(
            svg.contains("class=\"lane-label\"") && svg.contains(&format!(">{description}</text>")),
            "no full lane label for {description} in the chart"
        );
    }
    assert!(
        gpus.iter()
            .any(|g| g.contains("(vulkan") || g.contains("(gl")),
        "{gpus:?}"
    );
    let tiles: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("tiles per processor"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    for g in gpus {
        let ran = tiles.iter().any(|l| {
            l.trim_start()
                .split_once("  ")
                .is_some_and(|(_, p)| p.trim() == *g)
        });
        let why = tiles
            .iter()
            .find(|l| l.trim_start().starts_with(*g) && l.contains("was offered"));
        match why {
            Some(line) => {
                assert!(!ran, "{out}");
                assert!(
                    line.contains("took none: the cost model estimated")
                        && line.contains(" ms per tile there"),
                    "{line}"
                );
            }
            None => assert!(ran, "{g} ran no tile and the demo does not say why:\n{out}"),
        }
    }
}

#[test]
fn trace_writes_all_four_files() {
    let dir = std::env::temp_dir().join(format!("dagger-trace-{}", std::process::id()));
    let (ok, out, err) = dagger(&[
        "trace",
        "--out",
        dir.to_str().unwrap(),
        "bench",
        "overhead",
        "--tasks",
        "500",
        "--tree-depth",
        "8",
        "--repeat",
        "1",
    ]);
    assert!(ok, "{out}\n{err}");
    for f in ["trace.json", "gantt.svg", "graph.dot", "summary.txt"] {
        assert!(dir.join(f).exists(), "{f} written");
    }
    // The chart is named after the benchmark, not after its event count alone.
    let svg = std::fs::read_to_string(dir.join("gantt.svg")).unwrap();
    assert!(
        svg.contains("<title>dagger bench overhead --tasks 500"),
        "{}",
        &svg[..svg.len().min(400)]
    );
    // 1,511 tasks: the graph has one node per task name, not one per task.
    let dot = std::fs::read_to_string(dir.join("graph.dot")).unwrap();
    assert!(dot.contains("1511 tasks, one node per task name"), "{dot}");
    let nodes = dot
        .lines()
        .filter(|l| {
            l.trim_start()
                .strip_prefix('g')
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .filter(|l| !l.contains(" -> "))
        .count();
    assert!((1..=20).contains(&nodes), "{nodes} nodes:\n{dot}");
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trace.json")).unwrap()).unwrap();
    let slices = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .count();
    assert_eq!(
        slices,
        500 + 500 + 511,
        "one slice per task of the three shapes"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn linalg_benches_report_gflops_and_check() {
    for (bench, dtype, tol) in [
        ("gemm", "f32", 1e-5),
        ("syrk", "f64", 1e-12),
        ("cholesky", "f32", 1e-5),
        ("cholesky", "f64", 1e-12),
    ] {
        let (ok, out, err) = dagger(&[
            "bench", bench, "--n", "96", "--block", "32", "--dtype", dtype, "--repeat", "1",
            "--check", "--json",
        ]);
        assert!(ok, "{bench}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        for key in ["bench", "n", "block", "dtype", "scope", "gflops"] {
            assert!(!v[key].is_null(), "{key} in {v}");
        }
        assert_eq!(v["bench"], bench);
        assert_eq!(v["dtype"], dtype);
        assert!(v["gflops"].as_f64().unwrap() > 0.0);
        assert!(v["rel_error"].as_f64().unwrap() < tol, "{v}");
    }
    let (ok, _, err) = dagger(&["bench", "gemm", "--dtype", "f16"]);
    assert!(!ok && err.contains("f32 or f64"), "{err}");
    let (ok, _, err) = dagger(&["bench", "syrk", "--kernel", "fast"]);
    assert!(!ok && err.contains("tiled or naive"), "{err}");
    let (ok, _, err) = dagger(&["bench", "gemm", "--peer", "--dask-block", "0"]);
    assert!(
        !ok && err.contains("--dask-block must be at least 1"),
        "{err}"
    );
}

/// Whether a wgpu adapter is present (under `DAGGER_REQUIRE_GPU=1`, it must be).
fn has_gpu() -> bool {
    let ctx = dagger::Context::builder().threads(1).build().unwrap();
    !common::gpus_or_skip(&ctx, "the GPU benches").is_empty()
}

#[test]
fn bench_gemm_runs_both_gpu_kernels() {
    if !has_gpu() {
        return;
    }
    for kernel in ["naive", "tiled"] {
        let (ok, out, err) = dagger(&[
            "bench", "gemm", "--n", "130", "--block", "64", "--scope", "gpu", "--kernel", kernel,
            "--repeat", "1", "--check", "--json",
        ]);
        assert!(ok, "{kernel}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["kernel"], kernel);
        assert!(v["rel_error"].as_f64().unwrap() < 1e-5, "{v}");
    }
}

#[test]
fn bench_stream_json_compares_with_crossbeam() {
    let (ok, out, err) = dagger(&[
        "bench", "stream", "--items", "20000", "--repeat", "1", "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["bench"], "stream");
    let ours = v["items_per_s"].as_f64().unwrap();
    let theirs = v["crossbeam_items_per_s"].as_f64().unwrap();
    assert!(ours > 0.0 && theirs > 0.0, "{v}");
    let ratio = v["ratio"].as_f64().unwrap();
    assert!((ratio - ours / theirs).abs() < 1e-9 * ratio.max(1.0), "{v}");
    assert!(v["us_per_item"].as_f64().unwrap() > 0.0, "{v}");
    let (ok, out, err) = dagger(&["bench", "stream", "--items", "5000", "--repeat", "1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("crossbeam channels") && out.contains("µs/item"),
        "{out}"
    );
}

#[test]
fn bench_sort_sorts_f32_and_names_the_dtypes_it_knows() {
    // Two blocks: the result blocks merge two runs of f32, which --check then reads.
    let (ok, out, err) = dagger(&[
        "bench",
        "sort",
        "--n",
        "100001",
        "--dtype",
        "f32",
        "--repeat",
        "1",
        "--threads",
        "2",
        "--check",
        "--no-peer",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["dtype"], "f32", "{v}");
    assert_eq!(v["block"], 50001, "{v}");
    let (ok, _, err) = dagger(&["bench", "sort", "--n", "10", "--dtype", "f16"]);
    assert!(!ok);
    assert!(err.contains("unknown dtype `f16`: use f64 or f32"), "{err}");
}

#[test]
fn bench_sort_json_checks_the_order_and_times_numpy() {
    let (ok, out, err) = dagger(&[
        "bench", "sort", "--n", "100000", "--block", "30000", "--repeat", "1", "--check", "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["bench"], "sort");
    assert_eq!(v["dtype"], "f64");
    assert_eq!(v["n"], 100000);
    assert_eq!(v["block"], 30000);
    let secs = v["seconds"].as_f64().unwrap();
    assert!(secs > 0.0, "{v}");
    let rate = v["elements_per_s"].as_f64().unwrap();
    assert!((rate - 1e5 / secs).abs() < 1e-9 * rate, "{v}");
    match v["peer_seconds"].as_f64() {
        Some(peer) => {
            let ratio = v["ratio"].as_f64().unwrap();
            assert!((ratio - peer / secs).abs() < 1e-9 * ratio.max(1.0), "{v}");
        }
        // Without numpy the peer is skipped with a note, and both stay null.
        None => {
            assert!(
                v["ratio"].is_null() && err.contains("numpy peer"),
                "{v} {err}"
            );
        }
    }
}
