// An operator replays a dead letter (its cause fixed in Mamut meanwhile) and sees it
// delivered, then edits an order held for a wrong total and retries it. A screenshot of each
// step.
//
// Environment: BASE_URL, SCREENSHOT_DIR, USERNAME, PASSWORD, DEAD_ORDER (the shop order id of
// the dead letter), HELD_ORDER (of the held order), RIGHT_TOTAL (the held order's right total).

import { base, expectText, login, required, run, shot } from "./lib.mjs";

const deadOrder = required("DEAD_ORDER");
const heldOrder = required("HELD_ORDER");
const rightTotal = required("RIGHT_TOTAL");

/** The longest the relay may take to deliver a replayed order. */
const DELIVERY_MS = 30_000;

/** The failures page's row of `order`. */
const row = (page, order) => page.locator("tr", { hasText: order }).first();

/** Reloads the failures page until `order` is no longer on it (bounded). */
async function untilGone(page, order) {
  const deadline = Date.now() + DELIVERY_MS;
  for (;;) {
    await page.goto(`${base}/console/failures`);
    if ((await page.locator("tr", { hasText: order }).count()) === 0) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`order ${order} is still on the failures page after ${DELIVERY_MS} ms`);
    }
    await page.waitForTimeout(250);
  }
}

/** Opens `order`'s timeline through the order search and waits until it says delivered. */
async function expectDelivered(page, order) {
  const deadline = Date.now() + DELIVERY_MS;
  for (;;) {
    await page.goto(`${base}/console/orders?order=${encodeURIComponent(order)}`);
    const link = page.locator("a.order", { hasText: order }).first();
    await link.waitFor();
    await Promise.all([page.waitForURL(/\/console\/orders\/[^/]+\/\d+$/), link.click()]);
    const text = await page.innerText("main");
    if (text.includes("Delivered and written in Mamut")) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`order ${order} was not delivered within ${DELIVERY_MS} ms:\n${text}`);
    }
    await page.waitForTimeout(250);
  }
}

await run(async (page) => {
  await login(page, base, required("USERNAME"), required("PASSWORD"));

  // The dead letter, in its group, replayed by itself.
  await page.click('nav a[href="/console/failures"]');
  await expectText(page, "Failures");
  await row(page, deadOrder).waitFor();
  await row(page, heldOrder).waitFor();
  await shot(page, "failures");
  await Promise.all([
    page.waitForURL(/\/console\/failures\/replay$/),
    row(page, deadOrder).locator('button[name="only"]').click(),
  ]);
  await expectText(page, "1 replayed, 0 refused");
  await shot(page, "failures-replayed");
  await untilGone(page, deadOrder);
  await expectDelivered(page, deadOrder);
  await shot(page, "failures-replayed-delivered");

  // The held order: corrected in the text area, saved and retried.
  await page.goto(`${base}/console/failures`);
  await Promise.all([
    page.waitForURL(/\/console\/failures\/events\/[^/]+\/\d+$/),
    row(page, heldOrder).locator("a", { hasText: "Edit and retry" }).click(),
  ]);
  await expectText(page, "order.total");
  const area = page.locator('textarea[name="payload"]');
  const webhook = JSON.parse(await area.inputValue());
  webhook.order.total = rightTotal;
  await area.fill(JSON.stringify(webhook, null, 2));
  await shot(page, "edit-order");
  await Promise.all([
    page.waitForURL(/\/console\/failures\/events\/[^/]+\/\d+$/),
    page.click('button[type="submit"]:has-text("Save and retry")'),
  ]);
  await expectText(page, "back in the queue");
  await shot(page, "edit-order-retried");
  await expectDelivered(page, heldOrder);
  await shot(page, "edit-order-delivered");
});
