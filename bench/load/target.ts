/**
 * The server a run measures, as the generator's clients and back end see it: ipush
 * (PROTOCOL.md) or nchan, the peer (`GET /sub/<id>` http-chunked subscribers, one
 * `POST /pub/<id>` a message). A target is only an adapter — how a client opens its stream,
 * what one stream message stands for, how the back end publishes and what a publish's answer
 * means —; pacing, counting and latency are the generator's, the same for every target.
 *
 * nchan has no uids, no acks and no channel membership: a unicast client subscribes to the
 * channel id of its own uid, a fanout client to the shared channel id; a delivery is the raw
 * published body, read as the frame ipush would have sent for it (y=3 to a user, y=4 from a
 * channel) so that it is counted the same way.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Packr, Unpackr } from "msgpackr";
import { AdminClient, type AdminResponse } from "./admin.ts";
import type { ClientCodec, ClientTransport, TargetName } from "./ipc.ts";
import { connectPath, connectRequest, type Frame, pollRequest, upgradeRequest } from "./wire.ts";

/** nchan's channel ids, as `bench/peers/nchan-nginx.conf` matches them (`\w+`). */
export const NCHAN_ID = /^\w+$/;

/** How a client of a target opens its stream and reads what arrives on it. */
export interface StreamTarget {
  /** The path and query of a client's first request. */
  path(uid: string, password: string): string;
  /** The head of a request for `path`. */
  request(path: string): string;
  /** The frame one stream message stands for; throws when it is none. */
  frame(body: string): Frame;
  /** Whether the client may write on its stream (acks, heartbeats). */
  duplex: boolean;
  /** Whether messages are bytes (`codec=msgpack`), carried as latin1 strings, or UTF-8 text. */
  binary: boolean;
  /** The body of an ack of every `s` up to `seq`. */
  ack(uid: string, seq: number): string;
  /** The body of a heartbeat. */
  heartbeat: string;
}

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

/** A MessagePack map as a latin1 string, a character a byte. */
const packed = (value: unknown) => Buffer.from(packr.pack(value)).toString("latin1");

/** An ipush client's stream over `transport`, in `codec` (PROTOCOL.md §1–2, §6, §7). */
export function ipushStream(transport: ClientTransport, codec: ClientCodec = "json"): StreamTarget {
  const binary = codec === "msgpack";
  return {
    // A first poll that answers at once says whether polling works; the next ones are held.
    path: (uid, password) =>
      transport === "poll"
        ? `${connectPath(uid, password, "/poll")}&wait=0&since=0`
        : connectPath(uid, password) + (binary ? "&codec=msgpack" : ""),
    request: transport === "ws"
      ? upgradeRequest
      : transport === "poll"
      ? pollRequest
      : connectRequest,
    frame: binary ? (body) => unpackr.unpack(Buffer.from(body, "latin1")) : JSON.parse,
    duplex: transport !== "poll",
    binary,
    ack: binary
      ? (uid, seq) => packed({ y: 5, f: uid, s: seq })
      : (uid, seq) => `{"y":5,"f":${JSON.stringify(uid)},"s":${seq}}`,
    heartbeat: binary ? packed({ y: 0 }) : '{"y":0}',
  };
}

/**
 * An nchan http-chunked subscriber: of the shared `channel` when given (fanout), else of its
 * own uid's channel id (unicast). Each chunk is one published message.
 */
export function nchanStream(channel: string | null): StreamTarget {
  // What ipush would have sent for the same publish.
  const y = channel === null ? 3 : 4;
  return {
    path: (uid) => `/sub/${channel ?? uid}`,
    // Without `TE: chunked` nchan refuses an http-chunked subscriber (403).
    request: (path) => `GET ${path} HTTP/1.1\r\nHost: nchan\r\nTE: chunked\r\n\r\n`,
    frame: (body) => ({ y, b: body }),
    duplex: false,
    binary: false,
    ack: () => {
      throw new Error("nchan takes no acks");
    },
    heartbeat: "",
  };
}

/**
 * The back end's side of nchan: `POST /pub/<id>` a message, to a uid's channel id or the
 * shared one. 201 (delivered to subscribers) and 202 (no subscriber: nchan keeps nothing with
 * `nchan_message_buffer_length 0`, and the missing delivery shows in the run's figures) are
 * both a publish nchan accepted.
 */
export class NchanPublisher extends AdminClient {
  override pubTo(uid: string, _from: string, payload: string): Promise<AdminResponse> {
    return this.request("POST", `/pub/${uid}`, payload);
  }

  override pubChannel(channel: string, _from: string, payload: string): Promise<AdminResponse> {
    return this.request("POST", `/pub/${channel}`, payload);
  }

  override pubBatch(): Promise<AdminResponse> {
    return Promise.reject(new Error("nchan publishes one message a request"));
  }

  override sub(): Promise<AdminResponse> {
    return Promise.reject(new Error("nchan has no membership: clients subscribe themselves"));
  }

  override stats(): Promise<unknown> {
    return Promise.resolve(null);
  }

  override accepted(res: AdminResponse): boolean {
    return res.status === 201 || res.status === 202;
  }
}

/**
 * A client's stream for `target`: ipush over `transport`, or an nchan subscriber of `channel`
 * (null: of its own uid's channel id).
 */
export function streamFor(
  target: TargetName,
  transport: ClientTransport,
  codec: ClientCodec,
  channel: string | null,
): StreamTarget {
  return target === "nchan" ? nchanStream(channel) : ipushStream(transport, codec);
}

/** The back end's client of `target` at `host:port`. */
export function publisherFor(
  target: TargetName,
  host: string,
  port: number,
  timeoutMs?: number,
): AdminClient {
  return target === "nchan"
    ? new NchanPublisher(host, port, timeoutMs)
    : new AdminClient(host, port, timeoutMs);
}
