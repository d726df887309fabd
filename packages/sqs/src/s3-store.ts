/** A claim-check PayloadStore on Amazon S3 (or an S3-compatible endpoint such as fauxqs or MinIO). */
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { ConfigError, type PayloadStore, redactUrl } from '@omnibus/core';
import { awsErrorCode } from './aws-errors.js';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);
const EMULATOR_CREDENTIALS = { accessKeyId: 'omnibus-local', secretAccessKey: 'omnibus-local' };
/** A generous default for one message; S3 itself takes up to 5 GiB in one PutObject. */
const DEFAULT_MAX_OBJECT_BYTES = 100 * 1024 * 1024;
const S3_MAX_PUT_BYTES = 5 * 1024 ** 3;

export interface S3PayloadStoreOptions {
  bucket: string;
  /** A ready client (its own endpoint, region, credentials, middleware); otherwise one is built from the fields below. */
  client?: S3Client;
  /** Absent: `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, else AWS. A custom endpoint uses path-style URLs. */
  endpoint?: string;
  /** Absent: the SDK's provider chain (`AWS_REGION`, profile); `us-east-1` for a custom endpoint. */
  region?: string;
  /** Absent: the SDK's default credential provider chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Largest payload accepted (default 100 MiB, at most S3's 5 GiB single-PUT limit). */
  maxObjectBytes?: number;
  /** Create the bucket at first use if it is missing (default false: buckets are usually provisioned). */
  createBucket?: boolean;
}

export class S3PayloadStore implements PayloadStore {
  readonly name: string;
  readonly maxObjectBytes: number;
  readonly client: S3Client;
  private readonly bucket: string;
  private bucketReady: Promise<void> | undefined;

  constructor(options: S3PayloadStoreOptions) {
    if (!options?.bucket) throw new ConfigError('bucket', 'required: the S3 bucket payloads are stored in');
    const max = options.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES;
    if (!Number.isInteger(max) || max <= 0 || max > S3_MAX_PUT_BYTES) {
      throw new ConfigError(
        'maxObjectBytes',
        `must be a positive integer up to ${S3_MAX_PUT_BYTES}, got ${max}`,
      );
    }
    this.bucket = options.bucket;
    this.maxObjectBytes = max;
    this.name = `s3://${options.bucket}`;
    this.client = options.client ?? buildClient(options);
    if (!options.createBucket) this.bucketReady = Promise.resolve();
  }

  private ensureBucket(): Promise<void> {
    this.bucketReady ??= this.client.send(new CreateBucketCommand({ Bucket: this.bucket })).then(
      () => {},
      (err: unknown) => {
        const code = awsErrorCode(err);
        if (code === 'BucketAlreadyOwnedByYou' || code === 'BucketAlreadyExists') return;
        this.bucketReady = undefined;
        throw err;
      },
    );
    return this.bucketReady;
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    await this.ensureBucket();
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: 'application/octet-stream',
      }),
    );
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!res.Body) return undefined;
      return await res.Body.transformToByteArray();
    } catch (err) {
      const code = awsErrorCode(err);
      if (code === 'NoSuchKey' || code === 'NotFound') return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }
}

function buildClient(options: S3PayloadStoreOptions): S3Client {
  const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  let loopback = false;
  if (endpoint !== undefined) {
    try {
      loopback = LOOPBACK_HOSTS.has(new URL(endpoint).hostname);
    } catch {
      throw new ConfigError('endpoint', `not a URL: ${redactUrl(endpoint)}`);
    }
  }
  const envRegion = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  const envCredentials = process.env.AWS_ACCESS_KEY_ID !== undefined || process.env.AWS_PROFILE !== undefined;
  return new S3Client({
    ...(endpoint !== undefined ? { endpoint, forcePathStyle: true } : {}),
    ...(options.region !== undefined
      ? { region: options.region }
      : endpoint !== undefined && !envRegion
        ? { region: 'us-east-1' }
        : {}),
    ...(options.credentials !== undefined
      ? { credentials: { ...options.credentials } }
      : loopback && !envCredentials
        ? { credentials: EMULATOR_CREDENTIALS }
        : {}),
  });
}

/** An S3 payload store for claim check (see S3PayloadStoreOptions). */
export function s3PayloadStore(options: S3PayloadStoreOptions): S3PayloadStore {
  return new S3PayloadStore(options);
}
