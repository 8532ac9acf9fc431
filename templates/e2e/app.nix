# Your app. vmtest's contract: bin/myapp (`myapp server` serves HTTP on 127.0.0.1:8888),
# bin/myapp-migrate (`myapp-migrate DIR` applies DIR's NNN_name.up.sql), share/myapp/migrations,
# and /health answering {"status": "ok", "database": "ok"}.
{ buildGoModule }:
buildGoModule {
  pname = "myapp";
  version = "0.1.0";
  src = ./.;
  vendorHash = null; # the modules are vendored (go mod vendor); else the hash Nix reports
  subPackages = [ "cmd/myapp" "cmd/myapp-migrate" ];
  postInstall = ''
    mkdir -p $out/share/myapp
    cp -r migrations $out/share/myapp/migrations
  '';
  meta.mainProgram = "myapp";
}
