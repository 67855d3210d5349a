/*V:305 A block request is one chain laid out as the spec's struct:
 *
 *   le32 type; le32 reserved; le64 sector;   device-readable header
 *   u8 data[];                               readable (write) or writable (read, id)
 *   u8 status;                               the last device-writable byte
 *
 * Since VERSION_1 implies ANY_LAYOUT, the driver may cut these bytes into
 * buffers any way it likes: the header may span several descriptors, or
 * share one with the data. So we never look at descriptor boundaries, only
 * at byte positions: the first 16 readable bytes are the header, the last
 * writable byte is the status, and what lies between is the data.
 *
 * This file only decides what a chain asks for; it touches no file and
 * writes nothing. That makes it the place where the rules live, and the
 * easy thing to test against a model. :*/

import type { GuestMemory } from "../../memory.ts";
import { readableData } from "../chain.ts";
import type { Chain, Segment } from "../queue.ts";

/** Request types (virtio spec 5.2.6). */
export const VIRTIO_BLK_T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;
/** Status byte values. */
export const VIRTIO_BLK_S = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
/** virtio-blk feature bits (as bit numbers). */
export const VIRTIO_BLK_F = { SIZE_MAX: 1, SEG_MAX: 2, GEOMETRY: 4, RO: 5, BLK_SIZE: 6, FLUSH: 9 } as const;
/** Capacity and sector numbers count 512-byte sectors, whatever blk_size says. */
export const SECTOR_SIZE = 512;
/** Bytes in the request header. */
export const HEADER_SIZE = 16;
/** Bytes in a GET_ID answer (the serial, zero-padded, not NUL-terminated at full length). */
export const ID_BYTES = 20;

/** What the parser needs to know about the disk. */
export interface DiskShape {
  /** Capacity in 512-byte sectors. */
  readonly sectors: number;
  /** Writes are refused. */
  readonly readOnly: boolean;
  /** The most data segments one request may use (the seg_max we advertise). */
  readonly segMax: number;
}

/** A chain with no status byte: nothing can be reported, so the device must fail. */
export interface BrokenRequest {
  /** Discriminant. */
  kind: "broken";
  /** The rule's stable id, e.g. "blk-no-status". */
  rule: string;
  /** What the guest did. */
  detail: string;
}

/** A request answered at once with `status` (an error, or an empty transfer). */
export interface StatusRequest {
  /** Discriminant. */
  kind: "status";
  /** Guest address of the status byte. */
  statusAddr: number;
  /** VIRTIO_BLK_S_*. */
  status: number;
  /** Bytes written from the start of the writable area (the used length). */
  written: number;
  /** The rule broken, when status is not OK. */
  rule: string;
  /** Why, when status is not OK. */
  detail: string;
}

/** A read or a write of whole sectors inside the disk. */
export interface TransferRequest {
  /** Discriminant: read is VIRTIO_BLK_T_IN, write is VIRTIO_BLK_T_OUT. */
  kind: "read" | "write";
  /** Guest address of the status byte. */
  statusAddr: number;
  /** Byte offset in the file. */
  offset: number;
  /** Bytes to move, a multiple of 512, above zero. */
  length: number;
  /** The chain's buffers holding the data (writable for read, readable for write). */
  segments: readonly Segment[];
  /** Skip this many bytes of `segments` (the header, for a write). */
  skip: number;
  /** Bytes written from the start of the writable area if it succeeds (the used length). */
  written: number;
}

/** A cache flush (fdatasync). */
export interface FlushRequest {
  /** Discriminant. */
  kind: "flush";
  /** Guest address of the status byte. */
  statusAddr: number;
  /** The used length (just the status byte, when that is all the driver gave). */
  written: number;
}

/** A GET_ID: copy the serial into the first `length` writable bytes. */
export interface IdRequest {
  /** Discriminant. */
  kind: "id";
  /** Guest address of the status byte. */
  statusAddr: number;
  /** Serial bytes to write (at most 20; the data area may be shorter). */
  length: number;
  /** The used length. */
  written: number;
}

/** What one chain asks of the device. */
export type BlkRequest = BrokenRequest | StatusRequest | TransferRequest | FlushRequest | IdRequest;

/*V:310 The rules, with the names the device's messages carry. Only one of
 * them fails the device, because only then is there nowhere to say
 * "error": a chain with no writable byte has no status byte. Every other
 * mistake is the driver's request going wrong, not its queue, and the
 * answer is VIRTIO_BLK_S_IOERR in the status byte:
 *
 *   blk-no-status   no device-writable byte at all (fails the device)
 *   blk-header      fewer than 16 readable bytes: no whole header
 *   blk-layout      a read with readable data after the header, or a
 *                   write with writable bytes besides the status byte
 *   blk-align       data length not a multiple of 512
 *   blk-range       the sectors run past the end of the disk
 *   blk-seg-max     more data buffers than the seg_max we advertised
 *   blk-read-only   a write to a disk opened with ,ro
 *   blk-type        a type we do not implement: VIRTIO_BLK_S_UNSUPP
 *
 * A transfer of zero bytes is allowed and succeeds without touching the
 * file. The header's reserved word is ignored, and so is the sector of a
 * flush or GET_ID, as the spec tells devices. :*/

/**
 * Decides what `chain` asks for, checking every virtio-blk rule.
 * @param mem guest RAM (the header is read through it)
 * @param chain a chain popped from the request queue
 * @param disk capacity, read-only flag and seg_max
 * @returns the request, or why it cannot be served
 */
export function parseRequest(mem: GuestMemory, chain: Chain, disk: DiskShape): BlkRequest {
  const last = chain.writable[chain.writable.length - 1];
  if (last === undefined) {
    return {
      kind: "broken",
      rule: "blk-no-status",
      detail: `request ${chain.head} has no device-writable byte for its status`,
    };
  }
  const statusAddr = last.addr + last.len - 1;
  const statusOnly = chain.writableBytes === 1 ? 1 : 0;
  const error = (rule: string, detail: string, status: number = VIRTIO_BLK_S.IOERR): StatusRequest => ({
    kind: "status",
    statusAddr,
    status,
    written: statusOnly,
    rule,
    detail: `request ${chain.head}: ${detail}`,
  });
  if (chain.readableBytes < HEADER_SIZE) {
    return error("blk-header", `${chain.readableBytes} readable bytes, a header needs ${HEADER_SIZE}`);
  }
  const view = headerView(mem, chain);
  const at = view === mem.view ? mem.offset(chain.readable[0]!.addr, HEADER_SIZE, "virtio-blk request header") : 0;
  const type = view.getUint32(at, true);
  const sectorLo = view.getUint32(at + 8, true);
  const sectorHi = view.getUint32(at + 12, true);
  const dataIn = chain.writableBytes - 1;
  const dataOut = chain.readableBytes - HEADER_SIZE;
  switch (type) {
    case VIRTIO_BLK_T.IN:
    case VIRTIO_BLK_T.OUT: {
      const read = type === VIRTIO_BLK_T.IN;
      const what = read ? "read" : "write";
      if (!read && disk.readOnly) return error("blk-read-only", `write to a read-only disk`);
      if (read && dataOut > 0) return error("blk-layout", `read carries ${dataOut} readable bytes after its header`);
      if (!read && dataIn > 0) return error("blk-layout", `write has ${dataIn} writable bytes besides its status`);
      const length = read ? dataIn : dataOut;
      if (length % SECTOR_SIZE !== 0) {
        return error("blk-align", `${what} of ${length} bytes is not a whole number of ${SECTOR_SIZE}-byte sectors`);
      }
      const sectors = length / SECTOR_SIZE;
      const sector = sectorHi * U32 + sectorLo;
      if (sectorHi >= HIGH_LIMIT || sector > disk.sectors - sectors) {
        const at64 = (BigInt(sectorHi) << 32n) | BigInt(sectorLo);
        return error("blk-range", `${what} of ${sectors} sectors at ${at64} runs past the disk (${disk.sectors})`);
      }
      const segments = read ? chain.writable : chain.readable;
      const skip = read ? 0 : HEADER_SIZE;
      const pieces = countPieces(segments, skip, length);
      if (pieces > disk.segMax) {
        return error("blk-seg-max", `${what} uses ${pieces} data buffers, seg_max is ${disk.segMax}`);
      }
      if (length === 0) {
        return { kind: "status", statusAddr, status: VIRTIO_BLK_S.OK, written: 1, rule: "", detail: "" };
      }
      return {
        kind: read ? "read" : "write",
        statusAddr,
        offset: sector * SECTOR_SIZE,
        length,
        segments,
        skip,
        written: read ? length + 1 : 1,
      };
    }
    case VIRTIO_BLK_T.FLUSH:
      return { kind: "flush", statusAddr, written: statusOnly };
    case VIRTIO_BLK_T.GET_ID: {
      const length = Math.min(dataIn, ID_BYTES);
      return { kind: "id", statusAddr, length, written: dataIn <= ID_BYTES ? dataIn + 1 : ID_BYTES };
    }
    default:
      return error("blk-type", `type ${type} is not supported`, VIRTIO_BLK_S.UNSUPP);
  }
}

const U32 = 0x1_0000_0000;
/** A sector's high word at or above this puts it at 2^53 or more: past any disk. */
const HIGH_LIMIT = 0x20_0000;

/*V:349 Reading the header costs nothing extra in the usual case: when the
 * first readable buffer holds all 16 bytes, the fields are read straight
 * from guest memory (one bounds check), each exactly once into a local, so
 * a guest rewriting them under us cannot make a check and a use disagree.
 * Only a header cut across buffers is gathered into a copy first. The
 * sector is read as two 32-bit halves: a high half that puts it at 2^53 or
 * beyond is past any disk, so the range check needs no BigInt. :*/

/** A view holding the header: guest memory itself (header at the first readable buffer) or a gathered copy. */
function headerView(mem: GuestMemory, chain: Chain): DataView {
  const first = chain.readable[0];
  if (first !== undefined && first.len >= HEADER_SIZE) return mem.view;
  return new DataView(readableData(mem, chain, 0, HEADER_SIZE).buffer);
}

/** How many buffers (or parts of buffers) hold bytes [skip, skip + length) of `segments`. */
export function countPieces(segments: readonly Segment[], skip: number, length: number): number {
  let start = 0;
  let pieces = 0;
  const end = skip + length;
  for (let i = 0; i < segments.length; i++) {
    const stop = start + segments[i]!.len;
    if (stop > skip && start < end) pieces++;
    start = stop;
    if (start >= end) break;
  }
  return pieces;
}
