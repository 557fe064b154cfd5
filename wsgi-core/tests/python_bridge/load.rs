//! Loading: `module:attr`, `module:factory()`, `path/file.py:attr`, a module alone, and a
//! message that says what was not found for every way a spec can be wrong.

use std::fs;

use wsgi_core::python::{AppSpec, LoadError, PyOptions};

use crate::harness::{BOTH, Client, TestApp, body, fresh_dir, load_with, write_module};

const HELLO: &str = r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"loaded\n"]
"#;

const LOADED: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nloaded\n";

fn load(dir: &std::path::Path, target: &str) -> Result<crate::harness::Loaded, LoadError> {
    load_with(&AppSpec::new(target).with_chdir(dir), PyOptions::default())
}

fn load_err(dir: &std::path::Path, target: &str) -> LoadError {
    match load(dir, target) {
        Ok(_) => panic!("{target} loaded"),
        Err(e) => e,
    }
}

#[test]
fn a_missing_module_names_the_module_and_the_path_searched() {
    let dir = fresh_dir("t_load_missing");
    let e = load_err(&dir, "t_load_nowhere:app");
    let LoadError::ModuleNotFound { module, sys_path } = &e else { panic!("{e:?}") };
    assert_eq!(module, "t_load_nowhere");
    assert!(sys_path.contains(&dir.display().to_string()), "{sys_path:?}");
    let message = e.to_string();
    assert!(message.starts_with("module \"t_load_nowhere\" not found; searched sys.path: "));
    assert!(message.contains(&dir.display().to_string()), "{message}");

    let e = load_err(&dir, "t_load_nowhere.sub:app");
    assert!(
        matches!(&e, LoadError::ModuleNotFound { module, .. } if module == "t_load_nowhere.sub")
    );
}

#[test]
fn an_import_error_carries_the_traceback() {
    let dir = fresh_dir("t_load_broken");
    write_module(&dir, "t_load_broken", "raise RuntimeError('broken at import')\n");
    let e = load_err(&dir, "t_load_broken:app");
    let LoadError::ImportFailed { module, traceback } = &e else { panic!("{e:?}") };
    assert_eq!(module, "t_load_broken");
    assert!(traceback.starts_with("Traceback (most recent call last):"), "{traceback}");
    assert!(traceback.ends_with("RuntimeError: broken at import"), "{traceback}");
    assert!(e.to_string().starts_with("importing \"t_load_broken\" failed:\nTraceback"));

    // A module that exists but imports one that does not is an import error, not "not found".
    write_module(&dir, "t_load_needs_dep", "import t_load_not_installed\n");
    let e = load_err(&dir, "t_load_needs_dep:app");
    let LoadError::ImportFailed { module, traceback } = &e else { panic!("{e:?}") };
    assert_eq!(module, "t_load_needs_dep");
    assert!(traceback.ends_with("No module named 't_load_not_installed'"), "{traceback}");
}

#[test]
fn a_missing_or_uncallable_attribute_is_named() {
    let dir = fresh_dir("t_load_attrs");
    write_module(
        &dir,
        "t_load_attrs",
        &format!("{HELLO}\nnumber = 42\n\nclass holder:\n    app = app\n"),
    );
    let e = load_err(&dir, "t_load_attrs:nope");
    assert_eq!(
        e,
        LoadError::AttributeMissing { module: "t_load_attrs".into(), attr: "nope".into() }
    );
    assert_eq!(e.to_string(), "module \"t_load_attrs\" has no attribute \"nope\"");
    assert!(matches!(
        load_err(&dir, "t_load_attrs:holder.nope"),
        LoadError::AttributeMissing { attr, .. } if attr == "holder.nope"
    ));

    let e = load_err(&dir, "t_load_attrs:number");
    assert_eq!(
        e,
        LoadError::NotCallable { target: "t_load_attrs:number".into(), type_name: "int".into() }
    );
    assert_eq!(e.to_string(), "\"t_load_attrs:number\" is a int, not a callable WSGI application");

    // A dotted attribute reaches into the module's objects.
    let app = load(&dir, "t_load_attrs:holder.app").unwrap();
    app.serve(&Client::get("/")).assert_wire(LOADED);
}

#[test]
fn a_factory_is_called_once_at_load() {
    let app = TestApp::new(
        "t_load_factory",
        &format!(
            "{HELLO}
CALLS = []


def make_app():
    CALLS.append('make_app')
    return app


def make_validated():
    CALLS.append('make_validated')
    return validator(app)


def make_nothing():
    return None


def make_broken():
    raise ValueError('factory failed')
"
        ),
    );
    assert_eq!(app.eval("CALLS"), "[]", "loading module:attr calls nothing");
    for factory in ["make_app", "make_validated"] {
        let loaded = load(&app.dir, &format!("t_load_factory:{factory}()")).unwrap();
        let get = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let served = loaded.serve(&Client::new(&[get, get]));
        assert_eq!(served.text().matches("loaded\n").count(), 2);
        served.assert_quiet();
    }
    assert_eq!(app.eval("CALLS"), "['make_app', 'make_validated']");

    let e = load_err(&app.dir, "t_load_factory:make_nothing()");
    assert_eq!(
        e,
        LoadError::NotCallable {
            target: "t_load_factory:make_nothing()".into(),
            type_name: "NoneType".into()
        }
    );
    let e = load_err(&app.dir, "t_load_factory:make_broken()");
    let LoadError::FactoryFailed { target, traceback } = &e else { panic!("{e:?}") };
    assert_eq!(target, "t_load_factory:make_broken()");
    assert!(traceback.ends_with("ValueError: factory failed"), "{traceback}");
    assert!(
        e.to_string().starts_with("calling the factory \"t_load_factory:make_broken()\" failed")
    );
}

#[test]
fn a_file_path_and_a_module_alone_load() {
    let dir = fresh_dir("t_load_file");
    fs::create_dir_all(dir.join("sub")).unwrap();
    write_module(&dir.join("sub"), "t_load_file_app", HELLO);
    for v in BOTH {
        let app = load(&dir, &format!("sub/t_load_file_app.py:{}", v.attr())).unwrap();
        let served = app.serve(&Client::get("/"));
        served.assert_quiet();
        assert_eq!(body(&served.wire), b"loaded\n");
    }
    let e = load_err(&dir, "sub/t_load_missing.py:app");
    assert!(
        matches!(&e, LoadError::ModuleNotFound { module, .. } if module == "sub/t_load_missing.py")
    );

    // A module alone means its `application`.
    write_module(&dir, "t_load_default", &HELLO.replace("def app(", "def application("));
    let app = load(&dir, "t_load_default").unwrap();
    app.serve(&Client::get("/")).assert_wire(LOADED);
}

#[test]
fn extra_python_paths_are_searched() {
    let dir = fresh_dir("t_load_extra_path");
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).unwrap();
    write_module(&lib, "t_load_in_lib", HELLO);
    let spec = AppSpec::new("t_load_in_lib:validated").with_chdir(&dir).with_python_path(&lib);
    let app = load_with(&spec, PyOptions::default()).unwrap();
    let served = app.serve(&Client::get("/"));
    served.assert_quiet();
    assert!(served.text().ends_with("loaded\n\r\n0\r\n\r\n"));
}

#[test]
fn a_bad_spec_says_what_form_is_expected() {
    let dir = fresh_dir("t_load_bad_spec");
    for target in ["", ":app", "t_mod:", "  "] {
        let e = load_err(&dir, target);
        assert!(
            matches!(e, LoadError::BadSpec { reason, .. }
                if reason == "expected module:attr, module:factory() or path/file.py:attr"),
            "{target:?}: {e:?}"
        );
    }
    let e = load_err(&dir, "t_mod:make(1)");
    assert_eq!(
        e.to_string(),
        "cannot load \"t_mod:make(1)\": factories are called without arguments: write \
         module:factory()"
    );
}
