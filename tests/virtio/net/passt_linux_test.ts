// lguest-test-needs: guest-kernel
/*T:475 --net=user with a real network stack in the guest: Debian's cloud
 * kernel (T:253) and its initramfs, one vCPU, `--net=user,hostfwd=...`,
 * run in a namespace of the test's own (T:468). The guest's /init asks for
 * an address by DHCP and must get passt's (the namespace's own address and
 * its gateway); it fetches a page from an HTTP server the test runs on the
 * namespace's loopback, which passt reaches when the guest connects to the
 * gateway's address; then it answers one connection on port 80, which the
 * test makes to the host port passt forwards there. After the guest has
 * powered off, no passt is left in the namespace. :*/

import assert from "node:assert/strict";
import { ensureDebianGuest } from "../../../scripts/debian/guest.ts";
import { linuxUnreachable, pastEmulatorStalls, TEST_VM_GUEST_ARGS } from "../../helpers/emulator_stall.ts";
import { bootLinux, explained } from "../../helpers/linux_boot.ts";
import { netnsProblem } from "./netns.ts";
import { allowPing, PASST_NET, passtIn, passtProblem, routableNetNs } from "./passt_rig.ts";

const WHY_NOT = linuxUnreachable() ?? (await netnsProblem()) ?? (await passtProblem());
if (WHY_NOT) console.log(`passt_linux_test: skipping: ${WHY_NOT}`);

const HTTP_PORT = 8000;
const HOST_PORT = 18080;
const GATEWAY = PASST_NET.gateway.join(".");

/** Prints the body at argv[1]. */
const FETCH =
  "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end='')";

/** Runs `args` inside namespace `ns`. */
function inNs(ns: string, args: string[], piped = true): Deno.Command {
  return new Deno.Command("ip", {
    args: ["netns", "exec", ns, ...args],
    stdin: "null",
    stdout: piped ? "piped" : "null",
    stderr: piped ? "piped" : "null",
  });
}

/** Fetches `url` from inside `ns`, retrying for up to `ms` while nothing listens yet. */
async function fetchInNs(ns: string, url: string, ms: number): Promise<string> {
  const until = Date.now() + ms;
  let last = "";
  while (Date.now() < until) {
    // python3, not busybox wget: Debian's static busybox wget crashes on the host.
    const r = await inNs(ns, ["python3", "-c", FETCH, url]).output();
    if (r.success) return new TextDecoder().decode(r.stdout);
    last = new TextDecoder().decode(r.stderr).trim();
    await new Promise((res) => setTimeout(res, 500));
  }
  return `nothing from ${url}: ${last}`;
}

Deno.test({
  name: "--net=user: Debian's kernel gets an address by DHCP, fetches from the host, and answers a forwarded port",
  ignore: WHY_NOT !== undefined,
  sanitizeResources: false,
  async fn() {
    const guest = await ensureDebianGuest({ log: (s) => console.log(`debian: ${s}`) });
    const ns = await routableNetNs();
    const www = await Deno.makeTempDir({ prefix: "lguest-passt-www-" });
    let server: Deno.ChildProcess | undefined;
    try {
      await allowPing(ns);
      await Deno.writeTextFile(`${www}/page.txt`, "LGUEST-FROM-HOST\n");
      server = inNs(ns.name, [
        "python3",
        "-m",
        "http.server",
        String(HTTP_PORT),
        "--bind",
        "127.0.0.1",
        "--directory",
        www,
      ], false).spawn();
      let forwarded: Promise<string> | undefined;
      const b = await pastEmulatorStalls("--net=user", `${guest.root}/boot/System.map-${guest.release}`, () => {
        forwarded = undefined;
        return bootLinux({
          kernel: guest.bzImage,
          initrd: guest.initramfs,
          memoryMib: 256,
          options: [`--net=user,hostfwd=tcp:${HOST_PORT}-:80`],
          cmdline: [
            "console=ttyS0",
            "nokaslr",
            "lguest.dhcp=1",
            `lguest.fetch=http://${GATEWAY}:${HTTP_PORT}/page.txt`,
            "lguest.serve=80",
            ...TEST_VM_GUEST_ARGS,
          ],
          netns: ns,
          timeoutMs: 240_000,
          enough: (out) => {
            if (forwarded === undefined && out.includes("LGUEST-SERVING 80")) {
              forwarded = fetchInNs(ns.name, `http://127.0.0.1:${HOST_PORT}/`, 60_000);
            }
            return false;
          },
        });
      }, (b) => b);
      const answer = await (forwarded ?? Promise.resolve("the guest never served"));
      explained(b, () => {
        const want = `LGUEST-DHCP-OK ${PASST_NET.ip.join(".")}/${PASST_NET.prefix} ${GATEWAY}`;
        assert.ok(b.console.includes(want), `passt's DHCP gave the guest ${want}`);
        assert.match(b.console, /LGUEST-FETCHED LGUEST-FROM-HOST/, "the guest fetched the host's page through passt");
        assert.equal(answer.trim(), "LGUEST-FROM-GUEST", "the forwarded host port reached the guest");
        assert.match(b.console, /LGUEST-SERVED/, "the guest's server saw the connection");
        assert.match(b.console, /LGUEST-DONE/, "/init reached its end");
        assert.equal(b.code, 0, "a clean power-off");
      });
      assert.deepEqual(passtIn(ns), [], "no passt left in the namespace");
    } finally {
      server?.kill("SIGTERM");
      await server?.status;
      await ns.delete();
      await Deno.remove(www, { recursive: true });
    }
  },
});
