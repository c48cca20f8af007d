//! Compiles every `.py` under a dir with slipway's bytecode pool, for
//! bench/run's files/s comparison with `python -m compileall -j0`.
//!
//!   compile_tree PYTHON SRC_DIR OUT_DIR [WORKERS]

use slipway::layers::{bytecode, Owner};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, python, src, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: compile_tree PYTHON SRC_DIR OUT_DIR [WORKERS]");
        std::process::exit(2);
    };
    let workers = match rest.first() {
        Some(n) => n.parse().expect("WORKERS is a number"),
        None => bytecode::default_workers().expect("SLIPWAY_JOBS"),
    };
    let sources: Vec<(PathBuf, String)> = walkdir::WalkDir::new(src)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "py"))
        .map(|e| {
            let rel = e.path().strip_prefix(src).expect("under src");
            (e.path().to_path_buf(), format!("/{}", rel.display()))
        })
        .collect();
    let started = std::time::Instant::now();
    let compiled = bytecode::compile_with_workers(
        python.as_ref(),
        &sources,
        &bytecode::read_file,
        out.as_ref(),
        Owner::default(),
        workers,
    )
    .expect("compiling");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} files ({} skipped) in {seconds:.3} s with {workers} workers: {:.0} files/s",
        compiled.compiled_files,
        compiled.skipped.len(),
        compiled.compiled_files as f64 / seconds
    );
}
