//! Every WGSL file in `shaders/` parses and validates with naga (f64 ones with naga's
//! `FLOAT64` capability, which the validator here enables), each `*_f64.wgsl` is its f32
//! twin with only the scalar alias changed, and naga's errors name the line.

use std::path::PathBuf;

use dagger_wgpu::{validate_wgsl, validate_wgsl_with, GpuError, ShaderError};
use naga::valid::Capabilities;

fn shader_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shaders")
}

/// Every `*.wgsl` file in `shaders/`, sorted; panics if there is none.
fn shader_files() -> Vec<PathBuf> {
    let dir = shader_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.wgsl files found in {}",
        dir.display()
    );
    files
}

#[test]
fn every_shader_file_validates() {
    let files = shader_files();
    let f64_source = files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable shader"))
        .find(|s| s.contains("alias Scalar = f64;"))
        .expect("the f64 BLAS shaders are in shaders/");
    assert!(
        validate_wgsl_with(&f64_source, Capabilities::empty()).is_err(),
        "an f64 shader must need the FLOAT64 capability"
    );
    let mut checked = Vec::new();
    // `validate_wgsl` enables every capability, FLOAT64 (wgpu's SHADER_F64) included.
    let mut failures = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).expect("readable shader");
        match validate_wgsl(&source) {
            Ok(module) => {
                assert!(
                    !module.entry_points.is_empty(),
                    "{} has no entry point",
                    path.display()
                );
                checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    println!("validated {} shader files: {checked:?}", checked.len());
    assert!(
        failures.is_empty(),
        "invalid shaders:\n{}",
        failures.join("\n")
    );
    assert_eq!(checked.len(), files.len());
}

/// `gemm_f64.wgsl` and the others are their f32 files with `f64` in the alias line, so a
/// change to one of a pair that is not made to the other fails here.
#[test]
fn f64_shaders_are_their_f32_twins() {
    let files = shader_files();
    let twins: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("_f64.wgsl"))
        .collect();
    let names: Vec<String> = twins
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in [
        "gemm_f64.wgsl",
        "syrk_f64.wgsl",
        "potrf_f64.wgsl",
        "trsm_f64.wgsl",
        "tril_f64.wgsl",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    for f64_path in twins {
        let f32_path = PathBuf::from(f64_path.to_string_lossy().replace("_f64.wgsl", ".wgsl"));
        let f32_source = std::fs::read_to_string(&f32_path)
            .unwrap_or_else(|e| panic!("{} has no f32 twin: {e}", f64_path.display()));
        let f64_source = std::fs::read_to_string(f64_path).expect("readable shader");
        assert_eq!(
            f32_source.matches("alias Scalar = f32;").count(),
            1,
            "{} names its scalar type once",
            f32_path.display()
        );
        assert!(
            f64_source == f32_source.replace("alias Scalar = f32;", "alias Scalar = f64;"),
            "{} differs from {} in more than the scalar alias",
            f64_path.display(),
            f32_path.display()
        );
    }
}

#[test]
fn parse_error_names_line_and_column() {
    let source = "@compute @workgroup_size(1)\nfn main() {\n    let x = ;\n}\n";
    let err = validate_wgsl(source).expect_err("invalid WGSL must be rejected");
    assert!(matches!(err, ShaderError::Parse { .. }), "{err:?}");
    let position = err.location().expect("naga locates parse errors");
    assert_eq!(position.line, 3);
    let text = err.to_string();
    assert!(text.contains("line 3:"), "{text}");
    assert!(text.contains("wgsl:3:"), "{text}");
}

#[test]
fn validation_error_names_line() {
    // Parses, but assigns an f32 to a u32 variable.
    let source =
        "@compute @workgroup_size(1)\nfn main() {\n    var x: u32 = 1u;\n    x = 1.5;\n}\n";
    let err = validate_wgsl(source).expect_err("type error must be rejected");
    let text = err.to_string();
    assert!(text.contains(":4:"), "{text}");
    let gpu: GpuError = err.into();
    assert!(gpu.to_string().contains(":4:"), "{gpu}");
    assert!(std::error::Error::source(&gpu).is_some());
}
