//! The first-run notice: once per app per machine, on a terminal only.

/// OpenTally's notice for `app`.
pub fn default_text(app: &str, disable_vars: &[String]) -> String {
    let app_var = disable_vars
        .first()
        .map(|v| format!(", {v}=1"))
        .unwrap_or_default();
    format!(
        "{app} collects anonymous usage statistics (which features run, how long they take, whether \
         they fail, and the kind of environment) to improve {app}. No names, paths, data or IP \
         addresses. See what is sent: OPENTALLY_LOG=1. Turn it off: `opentally opt-out --app {app}`, \
         DO_NOT_TRACK=1{app_var}. This notice is shown once."
    )
}
