// Module load hook registered by fauxqs-preload.cjs (see there): raises the
// request body limit that fauxqs 1.x hard-codes in dist/app.js.
const NEEDLE = "bodyLimit: 11 * 1_048_576";

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.endsWith("/node_modules/fauxqs/dist/app.js")) return result;
  const mb = Number(process.env.FAUXQS_BODY_LIMIT_MB || 1024);
  const source = typeof result.source === "string" ? result.source : new TextDecoder().decode(result.source);
  if (!(Number.isFinite(mb) && mb > 0)) return result;
  if (!source.includes(NEEDLE)) {
    process.stderr.write(`fauxqs-hooks: "${NEEDLE}" not found in ${url}; body limit unchanged\n`);
    return result;
  }
  return { ...result, source: source.replace(NEEDLE, `bodyLimit: ${Math.floor(mb * 1048576)}`) };
}
