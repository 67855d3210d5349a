/*T:471 What --net=user may say (V:465): QEMU's hostfwd and passt's own
 * t=/u= become passt's -t/-u arguments, and every mistake is one line that
 * names the option. :*/

import assert from "node:assert/strict";
import { parseNetSpec } from "../../../lib/virtio/net/spec.ts";

Deno.test("--net: user with forwards becomes passt's arguments", () => {
  assert.deepEqual(parseNetSpec("user"), { mode: "user", passtArgs: [] });
  assert.deepEqual(parseNetSpec("user,hostfwd=tcp:8080-:80").passtArgs, ["-t", "8080:80"]);
  assert.deepEqual(parseNetSpec("user,hostfwd=tcp::8080-:80").passtArgs, ["-t", "8080:80"]);
  assert.deepEqual(parseNetSpec("user,hostfwd=udp:127.0.0.1:5353-:53").passtArgs, ["-u", "127.0.0.1/5353:53"]);
  assert.deepEqual(
    parseNetSpec("user,hostfwd=tcp:2222-:22,t=5000-5010:6000-6010,u=~25").passtArgs,
    ["-t", "2222:22", "-t", "5000-5010:6000-6010", "-u", "~25"],
  );
});

Deno.test("--net: mistakes are one line naming the option", () => {
  const cases: Array<[string, RegExp]> = [
    ["", /^--net=: unknown mode '' \(known: user\)$/],
    ["tap", /unknown mode 'tap'/],
    ["user,hostfwd=tcp:8080", /hostfwd=tcp:8080: expected tcp\|udp:\[<hostaddr>\]:<hostport>-:<guestport>/],
    ["user,hostfwd=sctp:1-:2", /expected tcp\|udp/],
    ["user,hostfwd=tcp:0-:80", /port 0 is not 1 to 65535/],
    ["user,hostfwd=tcp:8080-:65536", /port 65536 is not 1 to 65535/],
    ["user,hostfwd=tcp:8080-10.0.2.15:80", /passt forwards to the guest's one address/],
    ["user,t=22;rm", /t=22;rm: not a passt port list/],
    ["user,t=", /not a passt port list/],
    ["user,restrict=on", /unknown option 'restrict' \(known: hostfwd, t, u\)/],
  ];
  for (const [spec, says] of cases) {
    assert.throws(() => parseNetSpec(spec), (e: Error) => {
      assert.match(e.message, says, spec);
      assert.ok(e.message.startsWith(`--net=${spec}: `) && !e.message.includes("\n"), e.message);
      return true;
    });
  }
});
