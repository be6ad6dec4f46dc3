//! Every WGSL file in `shaders/` parses and validates with naga, and naga's errors name the
//! line.

use std::path::PathBuf;

use dagger_wgpu::{validate_wgsl, GpuError, ShaderError};

fn shader_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shaders")
}

#[test]
fn every_shader_file_validates() {
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
    let mut checked = Vec::new();
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
