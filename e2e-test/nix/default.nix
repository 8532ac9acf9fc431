# The Alicia e2e check: vmtest's web-stack e2e suite (lib/nix/web-stack-e2e.nix) for the Alicia
# package, exactly as another app's flake calls it. `pkgs` must carry the flake's overlay
# (alicia, alicia-mocks, alicia-e2e-client-tests); `vmtestLib` is the flake's lib.<system>.
# The result is the verdict (it fails when the suite failed); `.artifacts` always builds and
# holds the run's logs, JUnit, screenshots and summary (lib/nix/test-with-artifacts.nix).
# The testScript is e2e-test/test_script.py, whose own defaults are this very stack (what the
# portable runtime runs); tests/repo/test_nix_library.py checks the two agree.
# `browserSuite`/`browserLog` choose the client's runner: the Python suite by default, or the
# TypeScript one (pkgs.alicia-e2e-client-tests-ts, "playwright.log"): the flake's e2e-ts check.
# `nodeKind` is webStackE2e's: "vm" (QEMU VMs, the default) or "container" (systemd-nspawn
# containers, nixpkgs 26.05 and later): the flake's e2e-containers check, named alicia-e2e-containers.
{
  pkgs,
  vmtestLib,
  browserSuite ? pkgs.alicia-e2e-client-tests,
  browserLog ? "pytest.log",
  nodeKind ? "vm",
}:
let
  alicia = pkgs.alicia;
  mockUrl = "http://127.0.0.1:9090/v1";
in
vmtestLib.webStackE2e {
  name = if nodeKind == "vm" then "alicia-e2e" else "alicia-e2e-${nodeKind}s";
  app = "alicia";
  inherit nodeKind;
  package = alicia;
  inherit browserSuite browserLog;
  # Seed 000's configuration, hermetic: the LLM/ASR/TTS/embeddings endpoints and LiveKit are
  # local mocks (./server.nix) instead of internet hosts.
  environment = {
    ALICIA_SERVER_HOST = "127.0.0.1";
    ALICIA_SERVER_PORT = "8888";
    ALICIA_LLM_URL = mockUrl;
    ALICIA_LLM_MODEL = "qwen3-8b";
    ALICIA_LLM_MAX_TOKENS = "32368";
    ALICIA_LLM_TEMPERATURE = "0.1";
    ALICIA_ASR_URL = mockUrl;
    ALICIA_ASR_MODEL = "whisper";
    ALICIA_TTS_URL = mockUrl;
    ALICIA_TTS_MODEL = "kokoro";
    ALICIA_TTS_VOICE = "af_heart";
    ALICIA_EMBEDDING_URL = mockUrl;
    ALICIA_EMBEDDING_MODEL = "e5-large";
    ALICIA_LIVEKIT_URL = "ws://server:7880";
    ALICIA_STATIC_DIR = "${alicia}/share/alicia/frontend";
  };
  secrets = {
    ALICIA_LLM_API_KEY = "test-api-key";
    ALICIA_LIVEKIT_API_KEY = "APIkey1234";
    ALICIA_LIVEKIT_API_SECRET = "Fm2gvy8tLtzjDagyRe45Z/XLhC8BaDk5NF+bWdgvHy4=";
  };
  port = 8888;
  databaseUrlVariable = "ALICIA_POSTGRES_URL";
  databaseExtensions = [ "pgcrypto" "vector" ];
  postgresqlPackage = pkgs.postgresql_17.withPackages (p: [ p.pgvector ]);
  staticRoot = "${alicia}/share/alicia/frontend";
  proxyLocations = [ "/api/" ];
  helperServices = {
    "alicia-llm-mock.service" = 9090;
    "alicia-livekit.service" = 7880;
  };
  serverModules = [ ./server.nix ];
  clientModules = [ ./client.nix ];
}
