import { expect, test } from "@playwright/test";

test("the backend is healthy behind nginx", async ({ request }) => {
  const health = await request.get("/health");
  expect(health.status()).toBe(200);
  expect(await health.json()).toEqual({ status: "ok", database: "ok" });
});

test("a new conversation shows up in the sidebar", async ({ page }) => {
  await page.goto("/");
  await expect(page.getByTestId("app-root")).toHaveAttribute("data-ready", "true");
  await page.getByTestId("new-conversation-button").click();
  await expect(page.getByTestId("conversation-item")).toHaveCount(1);
});
