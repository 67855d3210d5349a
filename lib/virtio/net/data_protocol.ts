/*V:467 What the network card's main-thread side and its data-path thread
 * (data_path.worker.ts) share: the control words every served-on-a-thread
 * device has (V:336), then the card's own:
 *
 *   TX_SEEN       the transmit ring's avail index the thread had consumed
 *                 when it last went to sleep
 *   RX_WAITING    1 if it went to sleep watching the port for frames (it
 *                 had receive buffers), 0 if starved or broken
 *   TX_WAITING    1 if it went to sleep waiting for the port to take a
 *                 frame it holds back (the ring is not consumed then)
 *   TX_SENT ...   the engines' totals for the session, stored after each
 *   RX_DROPPED    turn (the main thread reads them for --verbose and tests)
 *
 * and the messages: init (the port's fd and how frames cross it), start
 * (one activation: guest memory, the negotiated features, both queue
 * sessions), close. :*/

import type { QueueSession } from "../device.ts";
import { THREAD_WORDS } from "../thread/window.ts";

/** The card's control words, after the common ones. */
export const NCTL = {
  TX_SEEN: THREAD_WORDS,
  RX_WAITING: THREAD_WORDS + 1,
  TX_WAITING: THREAD_WORDS + 2,
  TX_SENT: THREAD_WORDS + 3,
  TX_DROPPED: THREAD_WORDS + 4,
  RX_READ: THREAD_WORDS + 5,
  RX_DELIVERED: THREAD_WORDS + 6,
  RX_DROPPED: THREAD_WORDS + 7,
  WORDS: THREAD_WORDS + 8,
} as const;

/** How frames cross a port's fd (see PacketPort.framing). */
export type Framing = "packet" | "stream";

/** The first message: the port, as the thread must speak it. */
export interface NetInit {
  /** Message kind. */
  kind: "init";
  /** The control words. */
  ctl: SharedArrayBuffer;
  /** The port's fd (the main thread owns it and closes it after the thread has ended). */
  fd: number;
  /** How frames cross it. */
  framing: Framing;
  /** Names the peer of a stream port in its warnings. */
  peer: string | undefined;
  /** The eventfd that wakes the thread when a session is withdrawn. */
  stopFd: number;
  /** For messages. */
  name: string;
}

/** One activation of the card. */
export interface NetStart {
  /** Message kind. */
  kind: "start";
  /** The session number (REQ). */
  session: number;
  /** Host address of guest RAM. */
  hostAddress: bigint;
  /** Bytes of guest RAM. */
  memSize: number;
  /** The features the driver accepted. */
  features: bigint;
  /** The receive queue, if the driver set it up. */
  rx: QueueSession | undefined;
  /** The transmit queue, if the driver set it up. */
  tx: QueueSession | undefined;
}

/** Messages to the data-path thread. */
export type NetCommand = NetInit | NetStart | { kind: "close" };
