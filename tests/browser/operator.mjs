// An operator signs in, sees every tenant on the overview, finds an order by its shop order
// id, opens its timeline and reads that the webhook was received and delivered to Mamut;
// then the audit log. A screenshot of each view.
//
// Environment: BASE_URL, SCREENSHOT_DIR, USERNAME, PASSWORD, ORDER_ID (the shop order id),
// MAMUT_REF (its Mamut number), TENANTS (comma-separated tenant ids the overview must show).

import { base, expectText, login, required, run, shot } from "./lib.mjs";

const orderId = required("ORDER_ID");

await run(async (page) => {
  await login(page, base, required("USERNAME"), required("PASSWORD"));
  for (const tenant of required("TENANTS").split(",")) {
    await page.waitForSelector(`section[data-tenant="${tenant}"]`);
  }
  await expectText(page, "Orders per hour");
  await shot(page, "overview");

  await page.click('nav a[href="/console/orders"]');
  await page.fill('input[name="order"]', orderId);
  await Promise.all([page.waitForURL(/order=/), page.click('form.filters button[type="submit"]')]);
  const link = page.locator("a.order", { hasText: orderId }).first();
  await link.waitFor();
  await shot(page, "orders");

  await Promise.all([page.waitForURL(/\/console\/orders\/[^/]+\/\d+$/), link.click()]);
  await expectText(page, `Order ${orderId}`);
  await expectText(page, "Webhook received");
  await expectText(page, "Signature");
  await expectText(page, "Delivered and written in Mamut");
  await expectText(page, `Mamut number ${required("MAMUT_REF")}`);
  await shot(page, "order-timeline");

  await page.click('nav a[href="/console/audit"]');
  await expectText(page, "Audit log");
  await shot(page, "audit");
});
