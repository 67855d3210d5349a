/*T:701 Several vCPUs write device registers at once (V:241). Each of four
 * Workers plays a vCPU with the real MailboxClient and forwards a few
 * hundred writes as fast as it can, all ringing one eventfd; the main thread
 * serves them with the real MailboxSet from its event loop, as MmioDevices
 * does. Every write must arrive exactly once, with its own device, offset,
 * size and value (a write made of two vCPUs' halves would be caught), and
 * each vCPU's writes in the order it made them. :*/

import assert from "node:assert/strict";
import { close, drainEventfd, eventfd } from "../../lib/sys/calls.ts";
import { EPOLL } from "../../lib/sys/epoll.ts";
import { EventLoop } from "../../lib/eventloop.ts";
import { type ForwardedWrite, MailboxServer, MailboxSet } from "../../lib/virtio/mmio/proxy.ts";

const VCPU = `
import { MailboxClient } from "${new URL("../../lib/virtio/mmio/proxy.ts", import.meta.url).href}";
self.onmessage = (e) => {
  const { id, mailbox, fd, count } = e.data;
  const client = new MailboxClient(mailbox, fd);
  for (let seq = 0; seq < count; seq++) {
    client.send({ device: id, offset: seq * 4, size: 1 + (seq % 4), value: id * 0x1_0000_0000 + seq });
  }
  self.postMessage("done");
};
`;

const VCPUS = 4;
const WRITES = 300;

Deno.test("smp: four vCPUs' forwarded writes each arrive once, intact and in order", async () => {
  const fd = eventfd();
  const loop = new EventLoop();
  const mailboxes = Array.from({ length: VCPUS }, () => MailboxServer.shared());
  const set = new MailboxSet(mailboxes);
  const got: ForwardedWrite[][] = Array.from({ length: VCPUS }, () => []);
  const strays: ForwardedWrite[] = [];
  loop.add(fd, EPOLL.IN, () => {
    drainEventfd(fd);
    set.serve((w) => (got[w.device] ?? strays).push(w));
  });
  const running = loop.run();
  const url = URL.createObjectURL(new Blob([VCPU], { type: "application/typescript" }));
  const workers = mailboxes.map(() => new Worker(url, { type: "module" }));
  try {
    await Promise.all(workers.map((w, id) =>
      new Promise<void>((resolve, reject) => {
        w.onmessage = () => resolve();
        w.onerror = (e) => {
          e.preventDefault();
          reject(new Error(e.message));
        };
        w.postMessage({ id, mailbox: mailboxes[id], fd, count: WRITES });
      })
    ));
  } finally {
    workers.forEach((w) => w.terminate());
    URL.revokeObjectURL(url);
    set.stop();
    loop.stop();
    await running;
    loop.close();
    close(fd);
  }
  assert.deepEqual(strays, []);
  for (let id = 0; id < VCPUS; id++) {
    const want = Array.from({ length: WRITES }, (_, seq) => ({
      device: id,
      offset: seq * 4,
      size: 1 + (seq % 4),
      value: id * 0x1_0000_0000 + seq,
    }));
    assert.deepEqual(got[id], want, `vCPU ${id}'s writes`);
  }
});
