/**
 * Where the host runs, computed once per process from files and environment variables only:
 * never a network call (no cloud metadata service), never anything that names the machine or the
 * person. The same facts, in the same words, as the Rust SDK sends.
 */

import * as fs from "node:fs";
import * as os from "node:os";

type Vars = Record<string, string | undefined>;

/** Variables whose presence means a CI run. */
const CI_VARS = [
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

const has = (env: Vars, name: string): boolean => Object.prototype.hasOwnProperty.call(env, name) && env[name] !== undefined;

/** Whether the process runs in CI. */
export function inCi(env: Vars): boolean {
  return CI_VARS.some((v) => {
    const x = has(env, v) ? env[v]! : undefined;
    return x !== undefined && x !== "" && x !== "false" && x !== "0";
  });
}

function exists(p: string): boolean {
  try {
    fs.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Whether the process runs in a container (Docker, Podman, containerd). */
export function inContainer(env: Vars): boolean {
  if (exists("/.dockerenv") || exists("/run/.containerenv") || has(env, "KUBERNETES_SERVICE_HOST")) return true;
  try {
    const cgroup = fs.readFileSync("/proc/1/cgroup", "utf8");
    return ["docker", "containerd", "kubepods", "libpod"].some((k) => cgroup.includes(k));
  } catch {
    return false;
  }
}

/** The notebook front end, if any. */
export function notebook(env: Vars): string | null {
  if (has(env, "COLAB_RELEASE_TAG") || has(env, "COLAB_GPU")) return "colab";
  if (has(env, "VSCODE_PID") && has(env, "JPY_PARENT_PID")) return "vscode";
  if (has(env, "JPY_PARENT_PID") || has(env, "JPY_SESSION_NAME")) return "jupyter";
  return null;
}

/** The cloud, from the variables its runtimes set; never from a metadata endpoint. */
export function cloud(env: Vars): string | null {
  const h = (v: string): boolean => has(env, v);
  if (h("AWS_EXECUTION_ENV") || h("AWS_LAMBDA_FUNCTION_NAME") || h("ECS_CONTAINER_METADATA_URI_V4")) return "aws";
  if (h("K_SERVICE") || h("GOOGLE_CLOUD_PROJECT") || h("GCE_METADATA_HOST")) return "gcp";
  if (h("WEBSITE_SITE_NAME") || h("AZURE_FUNCTIONS_ENVIRONMENT")) return "azure";
  return null;
}

export interface Environment {
  ci: boolean;
  docker: boolean;
  kubernetes: boolean;
  notebook: string | null;
  cloud: string | null;
}

export function environment(env: Vars): Environment {
  return {
    ci: inCi(env),
    docker: inContainer(env),
    kubernetes: has(env, "KUBERNETES_SERVICE_HOST"),
    notebook: notebook(env),
    cloud: cloud(env),
  };
}

/** The OS family in the words Rust uses (`linux`, `macos`, `windows`). */
function osName(): string {
  switch (process.platform) {
    case "darwin":
      return "macos";
    case "win32":
      return "windows";
    default:
      return process.platform;
  }
}

/** The OS name and version: on Linux the kernel release cut to two parts, elsewhere none. */
export function osInfo(): { name: string; version?: string } {
  try {
    const release = fs.readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    // "6.1.0-18-amd64" → "6.1": enough to group by, too little to single out a machine.
    return { name: osName(), version: release.split(/[.-]/).slice(0, 2).join(".") };
  } catch {
    return { name: osName() };
  }
}

/** The CPU architecture in the words Rust uses (`x86_64`, `aarch64`). */
function arch(): string {
  const names: Record<string, string> = {
    x64: "x86_64",
    arm64: "aarch64",
    ia32: "x86",
    ppc64: "powerpc64",
    ppc: "powerpc",
    loong64: "loongarch64",
  };
  return names[process.arch] ?? process.arch;
}

/** Total memory in whole GiB, rounded up to a power of two so that it cannot single out a machine. */
function memoryGb(): number {
  let kb = 0;
  try {
    const line = fs
      .readFileSync("/proc/meminfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("MemTotal:"));
    kb = Number(line?.split(/\s+/)[1] ?? 0) || 0;
  } catch {
    kb = Math.floor(os.totalmem() / 1024);
  }
  const gb = Math.ceil(kb / (1024 * 1024));
  if (gb === 0) return 0;
  return 2 ** Math.ceil(Math.log2(gb));
}

function gpu(): boolean {
  return exists("/dev/nvidia0") || exists("/proc/driver/nvidia/version") || exists("/dev/kfd");
}

export interface Hardware {
  arch: string;
  cpus: number;
  memory_gb: number;
  gpu: boolean;
}

export function hardware(): Hardware {
  const cpus = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  return { arch: arch(), cpus, memory_gb: memoryGb(), gpu: gpu() };
}
