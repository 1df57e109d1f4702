// Fails CI early, with a clear reason, when the NATS server has no JetStream.
import { connect } from '@nats-io/transport-node';

const url = process.env.USAGE_TRACKER_NATS_URL ?? 'nats://127.0.0.1:4222';
const nc = await connect({ servers: url, timeout: 5000 });
try {
  const reply = await nc.request('$JS.API.INFO', new Uint8Array(), { timeout: 5000 });
  const info = JSON.parse(new TextDecoder().decode(reply.data));
  if (info.error) throw new Error(info.error.description);
  console.log(`[ci] NATS at ${url} has JetStream (streams: ${info.streams ?? 0})`);
} catch (error) {
  console.error(`[ci] NATS at ${url} has no JetStream (${error.message}); start it with -js`);
  process.exitCode = 1;
} finally {
  await nc.close();
}
