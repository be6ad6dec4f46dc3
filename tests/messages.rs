//! Error messages say what to change, once: the message carries the detail (the dimensions
//! that do not fit, the WGSL line, the function's own error), and `source()` continues with
//! what it did not say, so a printer that walks the chain shows each text once.

use std::error::Error;

use dagger::prelude::*;

/// The error and its sources, one message per line, as `anyhow` or `eyre` print them.
fn chain(e: &dyn Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        out.push(s.to_string());
        next = s.source();
    }
    out
}

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

#[test]
fn shape_errors_name_the_dimensions() {
    let ctx = ctx();
    let a = DArray::<f32>::ones(&ctx, [3, 4], Blocks::new([2, 2])).unwrap();
    assert_eq!(
        a.matmul(&a).unwrap_err().to_string(),
        "matmul: inner dimensions differ: a is [3, 4] (4 columns), b is [3, 4] (3 rows)"
    );
    let mut c = DArray::<f32>::zeros(&ctx, [3, 3], Blocks::new([2, 2])).unwrap();
    assert_eq!(
        c.gemm(Trans::No, Trans::No, 1.0, &a, &a, 0.0)
            .unwrap_err()
            .to_string(),
        "gemm: inner dimensions differ: op(a) is [3, 4] (4 columns), op(b) is [3, 4] (3 rows)"
    );
    assert_eq!(
        c.gemm(Trans::No, Trans::Yes, 1.0, &a, &a, 0.0)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Ok(()),
        "a·aᵀ is 3x3 and fits c"
    );
    let mut c4 = DArray::<f32>::zeros(&ctx, [4, 4], Blocks::new([2, 2])).unwrap();
    assert_eq!(
        c4.gemm(Trans::No, Trans::Yes, 1.0, &a, &a, 0.0)
            .unwrap_err()
            .to_string(),
        "gemm: the product is [3, 3] (3 rows, 3 columns), but c is [4, 4] (4 rows, 4 columns)"
    );
    let wide = DArray::<f64>::ones(&ctx, [4, 6], Blocks::new([2, 2])).unwrap();
    assert_eq!(
        wide.cholesky().unwrap_err().to_string(),
        "cholesky: needs a square matrix; a is [4, 6] (4 rows, 6 columns)"
    );
    let v = DArray::<f32>::ones(&ctx, [4], Blocks::new([2])).unwrap();
    assert_eq!(
        v.matmul(&a).unwrap_err().to_string(),
        "matmul: needs 2-D arrays; a is [4] (1 dimensions)"
    );
    let b = DArray::<f32>::ones(&ctx, [3, 5], Blocks::new([2, 2])).unwrap();
    assert_eq!(
        (&a + &b).unwrap_err().to_string(),
        "add: the shapes [3, 4] and [3, 5] differ in dimension 1 (4 vs 5)"
    );
    assert_eq!(
        (&a + &v).unwrap_err().to_string(),
        "add: the shapes [3, 4] and [4] differ in their number of dimensions (2 vs 1)"
    );
}

#[test]
fn a_bad_map_expression_says_where_once() {
    let ctx = ctx();
    let a = DArray::<f32>::ones(&ctx, [4], Blocks::new([2])).unwrap();
    let e = a.map_wgsl("x + floor(x)").unwrap_err();
    let lines = chain(&e);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("`x + floor(x)` at byte 4: unknown name `floor`"),
        "{lines:?}"
    );
}

#[test]
fn a_failed_task_shows_its_cause_once() {
    let ctx = ctx();
    let t = ctx.try_spawn_with(Options::new().name("parse"), || "12x".parse::<i32>(), ());
    let next = ctx.spawn_with(Options::new().name("next"), |x: i32| x + 1, (&t,));
    let e = t.fetch().unwrap_err();
    let lines = chain(&e);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("task `parse` (task "), "{lines:?}");
    assert!(lines[0].contains(") failed on cpu thread "), "{lines:?}");
    assert!(
        lines[0].ends_with(": invalid digit found in string"),
        "{lines:?}"
    );

    let e = next.fetch().unwrap_err();
    let lines = chain(&e);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("`next`") && lines[0].contains("because its input `parse`"),
        "{lines:?}"
    );
    assert_eq!(lines[1], e.root_cause().to_string());
    let joined = lines.join("\n");
    assert_eq!(joined.matches("invalid digit").count(), 1, "{joined}");
}

#[test]
fn an_empty_scope_lists_the_processors_once() {
    let ctx = ctx();
    let t = ctx.spawn_with(Options::new().scope(Scope::thread(7)), || 1, ());
    let e = t.fetch().unwrap_err();
    let joined = chain(&e).join("\n");
    assert!(
        joined.contains("threads(7)") || joined.contains("thread(7)"),
        "{joined}"
    );
    assert_eq!(joined.matches("considered:").count(), 1, "{joined}");
}

#[test]
fn invalid_wgsl_gives_the_line_and_column_in_the_message() {
    let e = WgslKernel::<(), f32>::builder(
        "bad",
        "@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n\
         @compute @workgroup_size(64)\n\
         fn main() { a[0] = undefined_name; }\n",
        "main",
    )
    .inputs([Access::ReadWrite])
    .workgroups(|_, _| [1, 1, 1])
    .build()
    .unwrap_err();
    assert_eq!(e.to_string(), "kernel `bad`: invalid WGSL at line 3:20");
    let naga = e.source().expect("naga's diagnostic").to_string();
    assert!(naga.contains("undefined_name"), "{naga}");
}

#[test]
fn tasks_are_named_after_their_function_or_where_they_were_spawned() {
    fn add1(x: i64) -> i64 {
        x + 1
    }
    let ctx = ctx();
    let f = ctx.spawn(add1, (1,));
    assert_eq!(f.name(), "add1");
    let c = ctx.spawn(|x: i64| x * 2, (&f,));
    assert_eq!(c.name(), format!("tests/messages.rs:{}", line!() - 1));
    let named = ctx.spawn_with(Options::new().name("double"), |x: i64| x * 2, (&f,));
    assert_eq!(named.name(), "double");
    let g = ctx.try_spawn(|| "x".parse::<i32>(), ());
    let spawned_at = line!() - 1;
    let e = g.fetch().unwrap_err();
    let expected = format!("task `tests/messages.rs:{spawned_at}` (task ");
    assert!(e.to_string().starts_with(&expected), "{e}");
    // Library operations are named after what they do.
    let a = DArray::<f32>::ones(&ctx, [4], Blocks::new([2])).unwrap();
    assert_eq!(a.sum().name(), "sum");
}
