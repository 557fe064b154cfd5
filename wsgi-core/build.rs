//! With the `python` feature, tests and benchmarks embed libpython: give them an rpath to the
//! directory of the one pyo3 built against, so they do not load another copy of the same
//! version from the system's library path.

fn main() {
    #[cfg(feature = "python")]
    if let Some(dir) = pyo3_build_config::get().lib_dir() {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
        println!("cargo:rustc-link-arg-benches=-Wl,-rpath,{dir}");
    }
}
