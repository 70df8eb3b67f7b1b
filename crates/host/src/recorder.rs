//! A host that reports what it runs: tests compare it with what a plan said it would run.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::{BoxRead, BoxWrite, CommandSpec, Host, HostError, Output};

/// Told of every command: the label current then (a plan step's id), and the command.
pub type Sink = Arc<dyn Fn(&str, &CommandSpec) + Send + Sync>;

/// `inner`, telling `sink` of each command (and file operation) before it runs, under the
/// current label (set by whoever drives it). Several recorders may share a label and a sink.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<dyn Host>,
    label: Arc<Mutex<String>>,
    sink: Sink,
}

impl Recorder {
    /// Reports what runs on `inner` to `sink`, under `label`.
    pub fn new(inner: Arc<dyn Host>, label: Arc<Mutex<String>>, sink: Sink) -> Self {
        Self { inner, label, sink }
    }

    fn note(&self, spec: &CommandSpec) {
        let label = self.label.lock().map(|l| l.clone()).unwrap_or_default();
        (self.sink)(&label, spec);
    }
}

#[async_trait]
impl Host for Recorder {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn file_user(&self) -> Option<String> {
        self.inner.file_user()
    }

    async fn run_unchecked(&self, spec: &CommandSpec) -> Result<Output, HostError> {
        self.note(spec);
        self.inner.run_unchecked(spec).await
    }

    async fn stream(
        &self,
        spec: &CommandSpec,
        stdin: Option<BoxRead>,
        stdout: BoxWrite,
    ) -> Result<Output, HostError> {
        self.note(spec);
        self.inner.stream(spec, stdin, stdout).await
    }
}
