/**
 * The one error type that crosses module, thread and node boundaries, and its one mapping to
 * what a client or back end is told: `{error, status}`. Anything that is not a
 * {@linkcode ServiceError} is a bug and maps to 500.
 *
 * @module
 */

/** An error with the HTTP status that describes it; crosses the thread link and /cluster/ops. */
export class ServiceError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
    this.name = "ServiceError";
  }
}

/** A failure as it is answered: a {@linkcode ServiceError} keeps its reason and status. */
export interface ErrorAnswer {
  error: string;
  status: number;
}

/** How `error` is answered. */
export function errorAnswer(error: unknown): ErrorAnswer {
  if (error instanceof ServiceError) return { error: error.message, status: error.status };
  return { error: error instanceof Error ? error.message : "internal error", status: 500 };
}

/** A `400` for a request that breaks a rule; `reason` is what the caller is told. */
export function badRequest(reason: string): ServiceError {
  return new ServiceError(reason, 400);
}
