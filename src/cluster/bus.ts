/**
 * The cluster bus: channel messages from one node to every other, over Redis pub/sub. Each
 * message carries its origin so a node ignores its own; the sender learns how many nodes
 * heard it and refuses to call a message delivered when a live node missed it.
 *
 * @module
 */

import { badRequest, ServiceError } from "../core/errors.ts";
import { type ChannelRequest, checkChannel, nameOf, objectOf } from "../core/requests.ts";
import type { Log } from "../core/log.ts";
import { closeRedis, duplicateRedis, type RedisClient } from "./redis.ts";

const CHANNEL_MESSAGES = "ipush:channel-messages";
/** A channel message's body text is held to the frame size when it is sent: this is a backstop. */
const BUS_MAX_BODY = 8 << 20;

interface Envelope {
  origin: string;
  requests: ChannelRequest[];
}

/** Channel messages between nodes. */
export class ClusterBus {
  #client: RedisClient;
  #subscriber: RedisClient;
  #nodeId: string;
  #peers: number;

  private constructor(client: RedisClient, subscriber: RedisClient, nodeId: string, peers: number) {
    this.#client = client;
    this.#subscriber = subscriber;
    this.#nodeId = nodeId;
    this.#peers = peers;
  }

  /**
   * Joins the bus; `deliver` gets the channel messages other nodes publish, each checked as
   * `/pub` checks a back end's (anything that can write to Redis can write here); `reject`
   * hears of a message that breaks the rules, which is dropped.
   */
  static async join(
    client: RedisClient,
    redisUrl: string,
    nodeId: string,
    peers: number,
    deliver: (request: ChannelRequest) => void,
    log: Log,
  ): Promise<ClusterBus> {
    const subscriber = await duplicateRedis(client, redisUrl, log);
    await subscriber.subscribe(CHANNEL_MESSAGES, (text) => {
      let envelope: Envelope;
      try {
        const fields = objectOf(JSON.parse(text), "envelope");
        if (fields.origin === nodeId) return;
        if (!Array.isArray(fields.requests)) throw badRequest("no requests");
        envelope = {
          origin: nameOf(fields.origin, "origin"),
          requests: fields.requests.map((request) => checkChannel(request, BUS_MAX_BODY)),
        };
      } catch (error) {
        return log("warn", `a cluster bus message was dropped: ${(error as Error).message}`);
      }
      envelope.requests.forEach(deliver);
    });
    return new ClusterBus(client, subscriber, nodeId, peers);
  }

  /**
   * Hands channel messages to every other node. Rejects with a 503 when fewer nodes than
   * the cluster's others were listening.
   */
  async publish(requests: ChannelRequest[]): Promise<void> {
    const envelope: Envelope = { origin: this.#nodeId, requests };
    let heard: number;
    try {
      heard = await this.#client.publish(CHANNEL_MESSAGES, JSON.stringify(envelope));
    } catch (error) {
      throw new ServiceError(`cluster bus unavailable: ${(error as Error).message}`, 503);
    }
    // Every node (this one included) subscribes once.
    const others = heard - 1;
    if (others < this.#peers) {
      throw new ServiceError(
        `channel message reached ${others} of ${this.#peers} other nodes`,
        503,
      );
    }
  }

  /** How many other nodes must hear each message (a Redis-managed cluster's members change). */
  setPeers(peers: number): void {
    this.#peers = peers;
  }

  /** Leaves the bus. */
  close(): Promise<void> {
    return closeRedis(this.#subscriber);
  }
}
