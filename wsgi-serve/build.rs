//! Lets the binary find the libpython it embeds when that library is outside the loader's
//! default paths (pyenv and other per-user installs): an rpath to its directory.

fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
