import { testOperator } from "../mod.ts";
import { gainPlugin } from "../examples/gain_plugin.ts";

Deno.test("example third-party gain plugin passes the operator contract suite", async () => {
  const r = await testOperator(gainPlugin, { strength: 0.5 });
  console.log(JSON.stringify(r));
});
