// A minimal MCP Apps host for tests/e2e/test_mcp_app.py, built on the real host side of
// @modelcontextprotocol/ext-apps (AppBridge): it calls a tool the way a chat client
// does, finds the tool's ui:// resource, renders it in a sandboxed frame under the
// spec's default Content Security Policy, and relays the view's tools/call requests
// to the real bridge (POST /relay: the test's official MCP client forwards them).
import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  getToolUiResourceUri,
} from "@modelcontextprotocol/ext-apps/app-bridge";

// The MCP Apps spec's restrictive default for a resource that declares no CSP.
const DEFAULT_CSP =
  "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
  "img-src 'self' data:; media-src 'self' data:; connect-src 'none'";

window.appCalls = []; // the tools the view called, in order

async function relay(method, params) {
  const response = await fetch("/relay", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method, params }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`${method}: ${body.error}`);
  return body;
}

async function main() {
  const scenario = await (await fetch("/scenario")).json();
  const { tools } = await relay("tools/list", {});
  const tool = tools.find((t) => t.name === scenario.tool);
  const uri = tool && getToolUiResourceUri(tool);
  if (!uri) throw new Error(`${scenario.tool} names no ui:// resource`);
  const { contents } = await relay("resources/read", { uri });
  const view = contents.find((c) => c.uri === uri);
  if (!view || view.mimeType !== RESOURCE_MIME_TYPE) throw new Error(`bad resource ${uri}`);

  const frame = document.createElement("iframe");
  frame.id = "app";
  frame.setAttribute("sandbox", "allow-scripts");
  frame.style.cssText = "width: 760px; height: 480px; border: 0";
  document.body.appendChild(frame);
  const bridge = new AppBridge(
    null,
    { name: "smartcolab-test-host", version: "1.0.0" },
    { serverTools: {}, logging: {} },
    { hostContext: { theme: "dark", displayMode: "inline", platform: "web", toolInfo: { tool } } },
  );
  bridge.oncalltool = async (params) => {
    window.appCalls.push(params.name);
    return relay("tools/call", params);
  };
  bridge.onsizechange = ({ height }) => {
    if (height) frame.style.height = `${height}px`;
  };
  const initialized = new Promise((resolve) => {
    bridge.oninitialized = resolve;
  });
  // The tool call runs while the view starts, as in a chat client.
  const called = relay("tools/call", { name: scenario.tool, arguments: scenario.arguments });
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  frame.srcdoc = view.text.replace(
    /<head>/i, `<head><meta http-equiv="Content-Security-Policy" content="${DEFAULT_CSP}">`);
  await initialized;
  await bridge.sendToolInput({ arguments: scenario.arguments });
  const result = await called;
  window.toolResult = result;
  await bridge.sendToolResult(result);
  document.body.dataset.ready = "1";
}

main().catch((e) => {
  document.body.dataset.error = String((e && e.stack) || e);
});
