// Child processes for the browser tests: servers on free loopback ports, ready when
// they answer HTTP, always stopped at the end.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');

/** `target/debug/examples/NAME`, or a clear failure if it was not built. */
export function example(name) {
  const file = path.join(TARGET, 'debug', 'examples', name);
  if (!existsSync(file)) {
    throw new Error(`${path.relative(ROOT, file)} does not exist: build it with \`cargo build --example ${name} --all-features\` (examples/${name}.rs)`);
  }
  return file;
}

/**
 * The gateway binary: $BOSH_PREBIND_GATEWAY_BIN (scripts/test.sh sets it to the one
 * `cargo install --path gateway --root target/gateway-install` put there), else that
 * install location; a clear failure if it is missing.
 */
export function gatewayBinary() {
  const file = process.env.BOSH_PREBIND_GATEWAY_BIN
    ? path.resolve(ROOT, process.env.BOSH_PREBIND_GATEWAY_BIN)
    : path.join(ROOT, 'target', 'gateway-install', 'bin', 'bosh-prebind-gateway');
  if (!existsSync(file)) {
    throw new Error(`${file} does not exist: install the gateway with \`cargo install --path gateway --root target/gateway-install --debug\` (scripts/test.sh does), or set BOSH_PREBIND_GATEWAY_BIN`);
  }
  return file;
}

/** A port nobody listens on right now (the kernel's pick for port 0). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const running = new Set();
// Last resort if the test process dies with children still up.
process.on('exit', () => {
  for (const child of running) child.process.kill('SIGKILL');
});

const OUTPUT_LIMIT = 64 * 1024;

export class Child {
  constructor(name, command, args, env) {
    this.name = name;
    this.output = '';
    this.process = spawn(command, args, {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (chunk) => {
      this.output = (this.output + chunk).slice(-OUTPUT_LIMIT);
    };
    this.process.stdout.setEncoding('utf8').on('data', collect);
    this.process.stderr.setEncoding('utf8').on('data', collect);
    this.exited = new Promise((resolve) => {
      this.process.on('error', (error) => {
        collect(`\n[${name}: ${error.message}]\n`);
        resolve({ code: null, signal: null, error });
      });
      this.process.on('exit', (code, signal) => resolve({ code, signal }));
    }).then((status) => {
      running.delete(this);
      this.status = status;
      return status;
    });
    running.add(this);
  }

  /** SIGTERM, then SIGKILL if it is still up after 5 s; resolves once it has exited. */
  async stop() {
    if (this.status) return this.status;
    this.process.kill('SIGTERM');
    let timer;
    const killed = new Promise((resolve) => {
      timer = setTimeout(() => {
        this.process.kill('SIGKILL');
        resolve();
      }, 5000);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }

  describe() {
    return `---- ${this.name} (${this.status ? `exited ${JSON.stringify(this.status)}` : 'running'}) output ----\n${this.output || '(none)'}`;
  }
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function answers(url) {
  try {
    // Any HTTP answer means the server is up. HEAD: never a page with a session in it.
    await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(2000) });
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts `command args(port)` on a free port and polls `http://127.0.0.1:PORT/` until it
 * answers (at most `timeoutMs`). Another process may take the port between our pick and
 * the child's bind: a child that exits saying so is retried on a new port.
 * Returns `{ child, url }`; throws with the child's output if it never gets ready.
 */
export async function startServer(name, command, args, { env = {}, timeoutMs = 20000 } = {}) {
  // Hermetic: everything the servers need comes from their flags (and `env`), not from
  // BOSH_PREBIND_* variables of the caller's shell.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('BOSH_PREBIND_')));
  const childEnv = { ...inherited, NO_COLOR: '1', ...env };
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = new Child(name, command, args(port), childEnv);
    const deadline = Date.now() + timeoutMs;
    while (!child.status) {
      if (await answers(url)) return { child, url };
      if (Date.now() > deadline) {
        await child.stop();
        throw new Error(`${name} did not answer HTTP at ${url} within ${timeoutMs} ms\n${child.describe()}`);
      }
      // Poll again soon, or at once if the child exits meanwhile.
      await Promise.race([delay(50), child.exited]);
    }
    if (attempt < 3 && /in use|EADDRINUSE/i.test(child.output)) continue;
    throw new Error(`${name} exited before it was ready\n${child.describe()}`);
  }
}
