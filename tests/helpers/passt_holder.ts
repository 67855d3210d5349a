/*T:469 A process that starts a passt port and then only waits, so a test
 * can SIGKILL it and see that passt does not outlive it. Usage:
 * passt_holder.ts <netns>; it prints `PASST <pid>` once connected. :*/

import { PasstPort } from "../../lib/virtio/net/passt.ts";

const ns = Deno.args[0];
if (ns === undefined) throw new Error("usage: passt_holder.ts <netns>");
const port = await PasstPort.start({ prefix: ["ip", "netns", "exec", ns] });
console.log(`PASST ${port.pid}`);
setInterval(() => {}, 60_000); // until killed
