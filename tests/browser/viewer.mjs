// A tenant viewer signs in and sees only its tenant: the overview shows no other tenant, a
// search for another tenant's order finds nothing, and that order's timeline is refused.
//
// Environment: BASE_URL, SCREENSHOT_DIR, USERNAME, PASSWORD, TENANT (the viewer's),
// OTHER_TENANT, OTHER_ORDER_ID, OTHER_TIMELINE (the path of the other tenant's order).

import { base, expectNoText, expectText, login, required, run, shot } from "./lib.mjs";

const otherTenant = required("OTHER_TENANT");
const otherOrder = required("OTHER_ORDER_ID");

await run(async (page) => {
  await login(page, base, required("USERNAME"), required("PASSWORD"));
  await page.waitForSelector(`section[data-tenant="${required("TENANT")}"]`);
  if ((await page.locator(`section[data-tenant="${otherTenant}"]`).count()) !== 0) {
    throw new Error(`the overview of a viewer shows tenant ${otherTenant}`);
  }
  await expectNoText(page, `(${otherTenant})`);
  await shot(page, "viewer-overview");

  await page.goto(`${base}/console/orders?order=${encodeURIComponent(otherOrder)}`);
  await expectText(page, "0 found");
  if ((await page.locator("a.order").count()) !== 0) {
    throw new Error(`a viewer's search for ${otherOrder} lists orders`);
  }
  await shot(page, "viewer-orders");

  const answer = await page.goto(`${base}${required("OTHER_TIMELINE")}`);
  const status = answer ? answer.status() : 0;
  if (status !== 403 && status !== 404) {
    throw new Error(`another tenant's timeline answered ${status}, not 403 or 404`);
  }
  await expectNoText(page, "Webhook received");
  await shot(page, "viewer-refused");
});
