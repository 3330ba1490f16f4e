/**
 * A client port, the front door's and every shard's alike: read and check each request, then
 * refuse it (400/403/404/405/411/413; 429 past a limit; 503 while draining, when the auth
 * backend cannot answer, or when the process has no descriptors to spare), redirect it (303
 * to the owning shard, 307 for a `/send`), answer a
 * preflight or an endpoint and read the client's next request (HTTP/1.1 keep-alive), or let
 * the transport the request asks for answer it and open the client's session (for a shard
 * that owns the uid, once its authenticator allowed it). Every refusal and redirect is closed by the server, whether or not the
 * client closes too.
 *
 * @module
 */

import net from "node:net";
import type { ShardAddress } from "../core/shard_map.ts";
import {
  redirectHead,
  refusal,
  response,
  shardLocation,
  wantsClose,
} from "../protocol/handshake.ts";
import { addressKey, type AddressLimitOptions, AddressLimits } from "./address_limits.ts";
import type { SocketBudget } from "./budget.ts";
import type {
  Admitted,
  ClientConn,
  ConnReceiver,
  StreamTarget,
  Transport,
  TransportContext,
  TransportName,
} from "./conn.ts";
import { Cors } from "./cors.ts";
import { answerEndpoint, ENDPOINTS, type EndpointServices } from "./endpoints.ts";
import {
  type Accepted,
  type HandshakeOptions,
  HandshakeReader,
  isTransport,
  type Outcome,
  reachedHost,
} from "./handshake.ts";
import { closed, closeSoon } from "./linger.ts";
import { TRANSPORTS } from "./registry.ts";

/** A session opened on an admitted client's connection: fed once `ready` resolves. */
export interface Opened {
  receiver: ConnReceiver;
  ready: Promise<void>;
}

/** What a client port needs. */
export interface ClientPortOptions extends EndpointServices {
  handshake: Omit<HandshakeOptions, "transports" | "endpoints" | "cors" | "redirectFor">;
  /** `--cors_origins`. */
  corsOrigins: string;
  /** Counters, and the per-connection limits of every transport. */
  context: TransportContext;
  /** The process's client sockets: past its limit a new one is refused at once. */
  budget: SocketBudget;
  /** What one client address may do on this port. */
  perAddress: AddressLimitOptions;
  /** Refuses new clients with 503 while true. */
  draining(): boolean;
  /** Where `uid` must connect, or null when this server owns it. */
  redirectFor(uid: string): ShardAddress | null;
  /**
   * Past a limit for the uid (its connections), the reason to refuse a new connection of its
   * `device` over `transport`; null to let it in.
   */
  admit(uid: string, device: string, transport: TransportName): string | null;
  /**
   * Opens the session of a client this server owns (never called at the front door),
   * resuming after its `since` (every `s ≤ since` acknowledged first).
   */
  open(conn: ClientConn, client: Admitted): Opened;
}

const EMPTY = new Uint8Array(0);

/** What every socket of one listening socket shares. */
interface Door {
  options: ClientPortOptions;
  limits: AddressLimits;
  cors: Cors;
  handshake: HandshakeOptions;
}

/** Where a socket's listeners find its {@linkcode ClientSocket}. */
const CLIENT = Symbol("client");

type TaggedSocket = net.Socket & { [CLIENT]: ClientSocket };

/**
 * Creates one listening socket's server (not yet listening). Each socket gets its listeners
 * once, for life, and they pass on to whatever reads it now: measured, removing a listener
 * (as a handshake reader handing over to a session would) turns the socket's `_events` into
 * a dictionary of ~450 bytes that stays for the connection's life. The listeners are shared
 * by every socket (they find the socket's state through it): an idle connection holds one
 * object and one closure of the front door's, not a closure a step.
 */
function createConnectServer(options: ClientPortOptions, limits: AddressLimits): net.Server {
  const cors = new Cors(options.corsOrigins);
  const handshake: HandshakeOptions = {
    ...options.handshake,
    transports: TRANSPORTS,
    endpoints: ENDPOINTS,
    cors,
    redirectFor: options.redirectFor,
  };
  const door: Door = { options, limits, cors, handshake };
  return net.createServer({ noDelay: true }, (socket) => {
    socket.on("error", ignoreError);
    const client = new ClientSocket(door, socket);
    if (!client.admitted()) return;
    (socket as TaggedSocket)[CLIENT] = client;
    client.read(EMPTY, false);
    socket.on("data", onData);
    socket.on("close", onClose);
  });
}

function onData(this: net.Socket, bytes: Uint8Array): void {
  (this as TaggedSocket)[CLIENT].target.receive(bytes);
}

function onClose(this: net.Socket): void {
  (this as TaggedSocket)[CLIENT].closed();
}

/** One accepted socket: its requests, one after another, until a transport takes it. */
class ClientSocket {
  readonly #door: Door;
  readonly #socket: net.Socket;
  readonly #address: string;
  /** What reads the socket now: a handshake reader, then the transport's connection. */
  target!: StreamTarget;

  constructor(door: Door, socket: net.Socket) {
    this.#door = door;
    this.#socket = socket;
    this.#address = addressKey(socket.remoteAddress ?? "");
  }

  /** Takes the socket's share of the limits; refuses it (and says so) past one. */
  admitted(): boolean {
    const { limits, options } = this.#door;
    if (!limits.startHandshake(this.#address)) {
      options.context.counters.limit_handshakes_number++;
      this.#shed(429, "too many handshakes");
      return false;
    }
    if (!options.budget.take()) {
      limits.endHandshake(this.#address);
      this.#shed(503, "server full");
      return false;
    }
    return true;
  }

  #shed(status: number, reason: string): void {
    this.#door.options.context.counters.error_number++;
    const socket = this.#socket;
    // No linger: descriptors (or this address's share of them) are what is short.
    socket.end(refusal(status, reason), () => socket.destroy());
  }

  /** Reads the next request; `rest` is what was read of it already. */
  read(rest: Uint8Array, keptAlive: boolean): void {
    this.target = new HandshakeReader(this.#socket, this.#door.handshake, (result) => {
      if (!keptAlive) this.#door.limits.endHandshake(this.#address);
      if (result) this.#serve(result);
    }, keptAlive);
    this.#socket.resume();
    if (rest.length > 0) this.target.receive(rest);
  }

  closed(): void {
    this.#door.options.budget.release();
    closed(this.#socket);
    this.target.closed();
  }

  #serve(result: Outcome): void {
    const { options, limits, cors } = this.#door;
    const { counters } = options.context;
    const socket = this.#socket;
    counters.connect_request_number++;
    // Only the front door limits heads, and it never waits on an authenticator.
    if (!limits.takeHead(this.#address)) {
      counters.limit_heads_number++;
      const headers = "status" in result ? result.headers : result.cors;
      return closeSoon(socket, refusal(429, "too many requests", undefined, headers));
    }
    if ("status" in result) {
      counters[result.counter]++;
      return closeSoon(socket, refusal(result.status, result.reason, undefined, result.headers));
    }
    if (options.draining()) {
      return closeSoon(socket, refusal(503, "draining", undefined, result.cors));
    }
    if ("redirect" in result) {
      counters.redirect_number++;
      const owner = result.redirect;
      const location = shardLocation(
        owner.host || reachedHost(socket),
        owner.port,
        result.route.path,
        result.head.query,
      );
      const status = isTransport(result.route) ? 303 : 307;
      return closeSoon(socket, redirectHead(location, undefined, status, result.cors));
    }
    const { route } = result;
    if (route === "preflight") {
      const { status, headers } = cors.preflight(result.head.headers);
      if (status !== 204) return closeSoon(socket, refusal(status, "origin not allowed"));
      socket.write(response(204, headers + "Connection: keep-alive\r\n", {}));
      return this.read(result.rest, true);
    }
    if (isTransport(route)) {
      const limited = options.admit(result.uid, result.device, route.name);
      if (limited === null) return this.#open(route, result);
      counters.limit_connections_number++;
      return closeSoon(socket, refusal(429, limited, undefined, result.cors));
    }
    const keepAlive = !wantsClose(result.head.headers);
    const answered = (answer: Uint8Array) => {
      if (socket.destroyed) return;
      if (!keepAlive) return closeSoon(socket, answer);
      socket.write(answer);
      this.read(result.rest, true);
    };
    // A bug answers a 500 and closes; it does not take the worker down.
    const failed = () => closeSoon(socket, refusal(500, "internal error", undefined, result.cors));
    answerEndpoint(result, route, options, reachedHost(socket), keepAlive).then(answered, failed);
  }

  #open(transport: Transport, result: Accepted): void {
    const { options } = this.#door;
    const admitted: Admitted = {
      uid: result.uid,
      device: result.device,
      codec: result.codec,
      access: result.access,
      since: result.since,
      head: result.head,
      cors: result.cors,
      rest: result.rest,
      next: nextRequest(this),
    };
    const conn = transport.open(this.#socket, admitted, options.context);
    this.target = conn;
    const { receiver, ready } = options.open(conn, admitted);
    conn.attach(receiver);
    // The socket stays paused until the session can take its messages.
    ready.then(() => {
      if (result.rest.length > 0) conn.receive(result.rest);
      conn.resume();
    });
  }
}

/**
 * The socket's way back to its client port. Made here, not in {@linkcode ClientSocket}'s
 * methods, so that it holds only the socket (a held poll keeps it; no request is kept with it)
 * and not as a field, so that a session that never asks for it costs nothing for it.
 */
function nextRequest(client: ClientSocket): (rest: Uint8Array) => void {
  return (rest) => client.read(rest, true);
}

/** A reset: "close" follows, and whoever reads the socket hears of that. */
function ignoreError(): void {}

/** Accept queues per client port; see {@linkcode listen}. */
const ACCEPT_QUEUES = 3;

/** A client port being served. */
export interface Listening {
  port: number;
  /** Stops accepting (open connections stay). */
  close(): void;
}

/**
 * Serves a client port from {@linkcode ACCEPT_QUEUES} listening sockets bound with
 * `SO_REUSEPORT`. The kernel caps each socket's accept queue at `net.core.somaxconn` (4096
 * here) and drops the SYNs of a full queue, which then wait out a 1 s retransmit: when 10,000
 * clients connect at once that, not the handshake work, is what bounds connects/s. Several
 * sockets spread the burst over as many queues. A plain bind first takes the port (or picks
 * one for port 0) and fails as before if another process has it, so a second daemon cannot
 * join the port through `SO_REUSEPORT`.
 */
export async function listen(
  options: ClientPortOptions,
  host: string,
  port: number,
): Promise<Listening> {
  const probe = net.createServer();
  const bound = await bind(probe, { host, port, backlog: 1 });
  await new Promise((resolve) => probe.close(resolve));
  const servers: net.Server[] = [];
  // One count per port, over all its accept queues.
  const limits = new AddressLimits(options.perAddress);
  try {
    for (let k = 0; k < ACCEPT_QUEUES; k++) {
      const server = createConnectServer(options, limits);
      servers.push(server);
      await bind(server, { host, port: bound, backlog: 4096, reusePort: true });
    }
  } catch (error) {
    for (const server of servers) server.close();
    throw error;
  }
  return { port: bound, close: () => servers.forEach((server) => server.close()) };
}

function bind(server: net.Server, options: net.ListenOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, () => {
      server.off("error", reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
