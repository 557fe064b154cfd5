#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Python bridge (feature `python`), end to end in memory: real applications, written as
//! Python modules in temporary directories and loaded through `PyApplication::load`, serve
//! requests that go through a real `Connection`, and each test asserts the exact bytes on the
//! wire and the exact log lines (issue 3, "Tests").
//!
//! Every module is served twice: as `module:app`, and as `module:validated`, the same app
//! wrapped in `wsgiref.validate.validator` with its warnings turned into errors. A correct app
//! must pass the validator silently; where an app breaks a rule on purpose, the test also pins
//! down what the validator makes of it.
//!
//! The Flask and Django tests load the frameworks from the virtualenv `scripts/python-env`
//! creates; `scripts/test` passes its path in `WSGI_TEST_VENV`.

#[path = "python_bridge/harness.rs"]
mod harness;

#[path = "python_bridge/environ.rs"]
mod environ;
#[path = "python_bridge/files.rs"]
mod files;
#[path = "python_bridge/frameworks.rs"]
mod frameworks;
#[path = "python_bridge/input.rs"]
mod input;
#[path = "python_bridge/load.rs"]
mod load;
#[path = "python_bridge/objects.rs"]
mod objects;
#[path = "python_bridge/response.rs"]
mod response;
#[path = "python_bridge/result.rs"]
mod result;
