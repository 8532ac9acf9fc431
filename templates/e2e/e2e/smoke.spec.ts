import { expect, test } from "@playwright/test";

test("the app answers healthy through nginx", async ({ request }) => {
  const response = await request.get("/health");
  expect(response.ok()).toBeTruthy();
  expect(await response.json()).toMatchObject({ status: "ok", database: "ok" });
});
