//! Finding and loading the application: `module:attr`, `module:factory()`, `path/file.py:attr`.

use std::fmt;
use std::path::{Path, PathBuf};

use pyo3::exceptions::PyModuleNotFoundError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::exchange::{format_exception, type_name};

/// Which application to load and where to look for it.
///
/// The target is `module:attr` (attr may be dotted), `module:factory()` (called once, with no
/// arguments), `path/to/file.py:attr`, or a module or file alone, meaning its `application`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSpec {
    target: String,
    chdir: Option<PathBuf>,
    python_path: Vec<PathBuf>,
}

impl AppSpec {
    /// Names the application to load.
    pub fn new(target: &str) -> AppSpec {
        AppSpec { target: target.to_owned(), chdir: None, python_path: Vec::new() }
    }

    /// Uses `dir` instead of the working directory as the first entry of `sys.path`.
    #[must_use]
    pub fn with_chdir(mut self, dir: impl Into<PathBuf>) -> AppSpec {
        self.chdir = Some(dir.into());
        self
    }

    /// Adds a directory to `sys.path` (after the working directory).
    #[must_use]
    pub fn with_python_path(mut self, dir: impl Into<PathBuf>) -> AppSpec {
        self.python_path.push(dir.into());
        self
    }

    /// Returns the target as given.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// Why an application could not be loaded. Each message says what was looked for and where.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The target is not of a form this loader understands.
    BadSpec {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The module (or file) does not exist on `sys.path`.
    ModuleNotFound {
        /// The module looked for.
        module: String,
        /// The `sys.path` searched.
        sys_path: Vec<String>,
    },
    /// Importing the module raised an exception.
    ImportFailed {
        /// The module imported.
        module: String,
        /// The Python traceback.
        traceback: String,
    },
    /// The module has no such attribute.
    AttributeMissing {
        /// The module.
        module: String,
        /// The attribute looked for.
        attr: String,
    },
    /// The attribute is not callable.
    NotCallable {
        /// The target as given.
        target: String,
        /// The type of what was found.
        type_name: String,
    },
    /// Calling the factory raised an exception.
    FactoryFailed {
        /// The target as given.
        target: String,
        /// The Python traceback.
        traceback: String,
    },
    /// Any other Python error while loading.
    Python {
        /// The Python traceback.
        traceback: String,
    },
}

impl LoadError {
    pub(crate) fn python(py: Python<'_>, e: PyErr) -> LoadError {
        LoadError::Python { traceback: format_exception(py, &e) }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::BadSpec { target, reason } => {
                write!(f, "cannot load {target:?}: {reason}")
            }
            LoadError::ModuleNotFound { module, sys_path } => {
                write!(f, "module {module:?} not found; searched sys.path: {}", sys_path.join(", "))
            }
            LoadError::ImportFailed { module, traceback } => {
                write!(f, "importing {module:?} failed:\n{traceback}")
            }
            LoadError::AttributeMissing { module, attr } => {
                write!(f, "module {module:?} has no attribute {attr:?}")
            }
            LoadError::NotCallable { target, type_name } => {
                write!(f, "{target:?} is a {type_name}, not a callable WSGI application")
            }
            LoadError::FactoryFailed { target, traceback } => {
                write!(f, "calling the factory {target:?} failed:\n{traceback}")
            }
            LoadError::Python { traceback } => write!(f, "loading failed:\n{traceback}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Loads the application `spec` names; the caller is attached to an initialized interpreter.
pub(crate) fn load<'py>(py: Python<'py>, spec: &AppSpec) -> Result<Bound<'py, PyAny>, LoadError> {
    let target = spec.target.trim();
    let (module_part, attr_part) = match target.rsplit_once(':') {
        Some((m, a)) => (m, a),
        None => (target, "application"),
    };
    if module_part.is_empty() || attr_part.is_empty() {
        return Err(LoadError::BadSpec {
            target: target.to_owned(),
            reason: "expected module:attr, module:factory() or path/file.py:attr",
        });
    }
    let (attr, factory) = match attr_part.strip_suffix("()") {
        Some(a) => (a, true),
        None if attr_part.contains('(') => {
            return Err(LoadError::BadSpec {
                target: target.to_owned(),
                reason: "factories are called without arguments: write module:factory()",
            });
        }
        None => (attr_part, false),
    };

    let cwd = match &spec.chdir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let mut front = vec![cwd.clone()];
    front.extend(spec.python_path.iter().cloned());
    let is_file = module_part.ends_with(".py");
    if is_file {
        let file = Path::new(module_part);
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            front.insert(0, front[0].join(parent));
        }
    }
    prepare_sys_path(py, &front).map_err(|e| LoadError::python(py, e))?;

    let module =
        if is_file { import_file(py, &cwd, module_part)? } else { import_module(py, module_part)? };
    let mut obj = module;
    for name in attr.split('.') {
        obj = obj.getattr(name).map_err(|_| LoadError::AttributeMissing {
            module: module_part.to_owned(),
            attr: attr.to_owned(),
        })?;
    }
    if factory {
        obj = obj.call0().map_err(|e| LoadError::FactoryFailed {
            target: target.to_owned(),
            traceback: format_exception(py, &e),
        })?;
    }
    if !obj.is_callable() {
        return Err(LoadError::NotCallable {
            target: target.to_owned(),
            type_name: type_name(&obj),
        });
    }
    Ok(obj)
}

/// Puts `front` first on `sys.path`, and the active virtualenv's site-packages (VIRTUAL_ENV)
/// after them: an embedded interpreter starts from its base installation, not the venv.
fn prepare_sys_path(py: Python<'_>, front: &[PathBuf]) -> PyResult<()> {
    let sys = py.import("sys")?;
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let version = py.version_info();
        let site_packages = Path::new(&venv)
            .join("lib")
            .join(format!("python{}.{}", version.major, version.minor))
            .join("site-packages");
        if site_packages.is_dir() {
            // addsitedir also processes .pth files (editable installs, namespace packages).
            py.import("site")?.call_method1("addsitedir", (site_packages.clone(),))?;
            let entry = site_packages.to_string_lossy().into_owned();
            if path.contains(&entry)? {
                path.call_method1("remove", (&entry,))?;
            }
            path.insert(0, entry)?;
        }
    }
    for dir in front.iter().rev() {
        let entry = dir.to_string_lossy().into_owned();
        if !path.contains(&entry)? {
            path.insert(0, entry)?;
        }
    }
    Ok(())
}

fn sys_path(py: Python<'_>) -> Vec<String> {
    py.import("sys")
        .and_then(|sys| sys.getattr("path"))
        .and_then(|p| p.extract::<Vec<String>>())
        .unwrap_or_default()
}

fn import_module<'py>(py: Python<'py>, module: &str) -> Result<Bound<'py, PyAny>, LoadError> {
    match py.import(module) {
        Ok(m) => Ok(m.into_any()),
        Err(e)
            if e.is_instance_of::<PyModuleNotFoundError>(py)
                && missing_is_target(py, &e, module) =>
        {
            Err(LoadError::ModuleNotFound { module: module.to_owned(), sys_path: sys_path(py) })
        }
        Err(e) => Err(LoadError::ImportFailed {
            module: module.to_owned(),
            traceback: format_exception(py, &e),
        }),
    }
}

/// Whether a ModuleNotFoundError is about `module` itself (or a parent package of it), rather
/// than about something the module imports.
fn missing_is_target(py: Python<'_>, e: &PyErr, module: &str) -> bool {
    let name = e.value(py).getattr("name").and_then(|n| n.extract::<String>());
    match name {
        Ok(name) => module == name || module.starts_with(&format!("{name}.")),
        Err(_) => true,
    }
}

/// Imports `file` (relative to `base` unless absolute) as a module named after its stem.
fn import_file<'py>(
    py: Python<'py>,
    base: &Path,
    file: &str,
) -> Result<Bound<'py, PyAny>, LoadError> {
    let path = base.join(file);
    if !path.is_file() {
        return Err(LoadError::ModuleNotFound { module: file.to_owned(), sys_path: sys_path(py) });
    }
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let code = c"
import importlib.util, sys
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
";
    let loader = PyModule::from_code(py, code, c"wsgi_core_loader.py", c"wsgi_core_loader")
        .and_then(|m| m.getattr("load"))
        .map_err(|e| LoadError::python(py, e))?;
    loader.call1((name, path.to_string_lossy().into_owned())).map_err(|e| LoadError::ImportFailed {
        module: file.to_owned(),
        traceback: format_exception(py, &e),
    })
}
