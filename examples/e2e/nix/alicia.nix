# The Alicia backend (Go) with its migrations and the built frontend, as vmtest's e2e suite
# expects a package: bin/alicia (`alicia server`), bin/alicia-migrate (`alicia-migrate DIR`),
# share/alicia/migrations, share/alicia/frontend.
{ lib, buildGoModule }:
buildGoModule {
  pname = "alicia";
  version = "0.4.0";
  # The repository: cmd/, internal/, migrations/, frontend/dist (the SPA, built by its own job).
  src = ./..;
  vendorHash = null; # go mod vendor
  subPackages = [ "cmd/alicia" "cmd/alicia-migrate" ];
  postInstall = ''
    mkdir -p $out/share/alicia
    cp -r migrations $out/share/alicia/migrations
    cp -r frontend/dist $out/share/alicia/frontend
  '';
  meta = {
    description = "Alicia voice assistant backend";
    mainProgram = "alicia";
    license = lib.licenses.mit;
  };
}
