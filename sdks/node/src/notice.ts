/** The first-run notice: once per app per machine, on a terminal only. The Rust SDK's words. */

export function defaultNotice(app: string, disableVars: readonly string[]): string {
  const appVar = disableVars.length > 0 ? `, ${disableVars[0]}=1` : "";
  return (
    `${app} collects anonymous usage statistics (which features run, how long they take, whether ` +
    `they fail, and the kind of environment) to improve ${app}. No names, paths, data or IP ` +
    `addresses. See what is sent: OPENTALLY_LOG=1. Turn it off: \`opentally opt-out --app ${app}\`, ` +
    `DO_NOT_TRACK=1${appVar}. This notice is shown once.`
  );
}
