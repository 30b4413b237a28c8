//! Debounced watching of the policies directory.

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use std::path::Path;
use std::time::Duration;

use super::{Guard, GuardError};

/// Keeps the policies directory watched while it lives; drop it to stop watching.
pub struct PolicyWatcher {
    _debouncer: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWatcher").finish_non_exhaustive()
    }
}

impl PolicyWatcher {
    pub(super) fn start(guard: Guard, dir: &Path) -> Result<PolicyWatcher, GuardError> {
        let handler = move |result: DebounceEventResult| match result {
            Ok(events) => {
                let relevant = events.iter().any(|e| {
                    !e.kind.is_access()
                        && e.paths.iter().any(|p| {
                            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                            !name.starts_with('.') && !name.ends_with('~')
                        })
                });
                if relevant {
                    // Errors are logged and kept for `status` by reload itself.
                    let _ = guard.reload();
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "policy watcher error");
                }
            }
        };
        let mut debouncer = new_debouncer(Duration::from_millis(300), None, handler)
            .map_err(|e| GuardError::Invalid(format!("cannot watch {}: {e}", dir.display())))?;
        debouncer
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|e| GuardError::Invalid(format!("cannot watch {}: {e}", dir.display())))?;
        Ok(PolicyWatcher {
            _debouncer: Box::new(debouncer),
        })
    }
}
