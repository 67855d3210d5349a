/*T:737 Loaded as a Worker by phases.ts: the vCPU Worker's module graph,
 * then one message, so the parent can time a Worker's startup. :*/
import "../../lib/vcpu.worker.ts";

(self as unknown as { postMessage(m: string): void }).postMessage("loaded");
