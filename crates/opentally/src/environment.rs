//! Where the host runs, computed once per process from files and environment variables only:
//! never a network call (no cloud metadata service), never anything that names the machine or
//! the person.

use std::collections::HashMap;
use std::path::Path;

use opentally_protocol::event::{Environment, Hardware, NameVersion};

/// Variables whose presence means a CI run.
const CI_VARS: [&str; 12] = [
    "CI",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "TF_BUILD",
    "TEAMCITY_VERSION",
    "BITBUCKET_BUILD_NUMBER",
    "DRONE",
    "CODEBUILD_BUILD_ID",
];

/// Whether the process runs in CI.
pub fn in_ci(env: &HashMap<String, String>) -> bool {
    CI_VARS.iter().any(|v| {
        env.get(*v)
            .is_some_and(|x| !x.is_empty() && x != "false" && x != "0")
    })
}

/// Whether the process runs in a container (Docker, Podman, containerd).
pub fn in_container(env: &HashMap<String, String>) -> bool {
    Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || env.contains_key("KUBERNETES_SERVICE_HOST")
        || std::fs::read_to_string("/proc/1/cgroup").is_ok_and(|c| {
            ["docker", "containerd", "kubepods", "libpod"]
                .iter()
                .any(|k| c.contains(k))
        })
}

/// The notebook front end, if any.
pub fn notebook(env: &HashMap<String, String>) -> Option<String> {
    if env.contains_key("COLAB_RELEASE_TAG") || env.contains_key("COLAB_GPU") {
        Some("colab".into())
    } else if env.contains_key("VSCODE_PID") && env.contains_key("JPY_PARENT_PID") {
        Some("vscode".into())
    } else if env.contains_key("JPY_PARENT_PID") || env.contains_key("JPY_SESSION_NAME") {
        Some("jupyter".into())
    } else {
        None
    }
}

/// The cloud, from the variables its runtimes set; never from a metadata endpoint.
fn cloud(env: &HashMap<String, String>) -> Option<String> {
    let has = |v: &str| env.contains_key(v);
    if has("AWS_EXECUTION_ENV")
        || has("AWS_LAMBDA_FUNCTION_NAME")
        || has("ECS_CONTAINER_METADATA_URI_V4")
    {
        Some("aws".into())
    } else if has("K_SERVICE") || has("GOOGLE_CLOUD_PROJECT") || has("GCE_METADATA_HOST") {
        Some("gcp".into())
    } else if has("WEBSITE_SITE_NAME") || has("AZURE_FUNCTIONS_ENVIRONMENT") {
        Some("azure".into())
    } else {
        None
    }
}

pub fn environment(env: &HashMap<String, String>) -> Environment {
    Environment {
        ci: in_ci(env),
        docker: in_container(env),
        kubernetes: env.contains_key("KUBERNETES_SERVICE_HOST"),
        notebook: notebook(env),
        cloud: cloud(env),
    }
}

/// The OS name and version: on Linux the kernel release, elsewhere the family alone.
pub fn os() -> NameVersion {
    let version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        // "6.1.0-18-amd64" → "6.1": enough to group by, too little to single out a machine.
        .map(|r| {
            r.trim()
                .split(['.', '-'])
                .take(2)
                .collect::<Vec<_>>()
                .join(".")
        });
    NameVersion {
        name: std::env::consts::OS.to_owned(),
        version,
    }
}

/// Total memory in whole GiB, rounded to a power of two so that it cannot single out a machine.
fn memory_gb() -> u32 {
    let kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let gb = kb.div_ceil(1024 * 1024);
    if gb == 0 {
        return 0;
    }
    u32::try_from(gb.next_power_of_two()).unwrap_or(u32::MAX)
}

fn gpu() -> bool {
    Path::new("/dev/nvidia0").exists()
        || Path::new("/proc/driver/nvidia/version").exists()
        || Path::new("/dev/kfd").exists()
}

pub fn hardware() -> Hardware {
    Hardware {
        arch: std::env::consts::ARCH.to_owned(),
        cpus: std::thread::available_parallelism()
            .map_or(0, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        memory_gb: memory_gb(),
        gpu: gpu(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn detects_ci_notebooks_and_clouds_from_variables_only() {
        // (environment, CI, notebook, cloud)
        type Case = (
            HashMap<String, String>,
            bool,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (env(&[]), false, None, None),
            (env(&[("CI", "true")]), true, None, None),
            (env(&[("CI", "false")]), false, None, None),
            (env(&[("GITHUB_ACTIONS", "true")]), true, None, None),
            (
                env(&[("JPY_PARENT_PID", "12")]),
                false,
                Some("jupyter"),
                None,
            ),
            (
                env(&[("JPY_PARENT_PID", "12"), ("VSCODE_PID", "3")]),
                false,
                Some("vscode"),
                None,
            ),
            (
                env(&[("COLAB_RELEASE_TAG", "x")]),
                false,
                Some("colab"),
                None,
            ),
            (
                env(&[("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")]),
                false,
                None,
                Some("aws"),
            ),
            (env(&[("K_SERVICE", "svc")]), false, None, Some("gcp")),
            (
                env(&[("WEBSITE_SITE_NAME", "x")]),
                false,
                None,
                Some("azure"),
            ),
        ];
        for (i, (e, ci, nb, cl)) in cases.iter().enumerate() {
            let got = environment(e);
            assert_eq!(
                (got.ci, got.notebook.as_deref(), got.cloud.as_deref()),
                (*ci, *nb, *cl),
                "case {i}"
            );
        }
        assert!(environment(&env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")])).kubernetes);
    }

    #[test]
    fn hardware_is_coarse() {
        let h = hardware();
        assert!(h.cpus >= 1);
        assert!(h.memory_gb == 0 || h.memory_gb.is_power_of_two());
        let os = os();
        assert!(
            os.version
                .as_deref()
                .is_none_or(|v| v.split('.').count() <= 2),
            "{os:?}"
        );
    }
}
