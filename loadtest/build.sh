# build.sh is sourced by the measuring scripts: it builds bin/impressiond and
# bin/loadtest from the tree and, with BASE=<git ref>, that ref's impressiond
# into bin/impressiond-base (in a temporary worktree, removed after), so a
# change can be measured side by side with what it replaces.
go build -o bin/impressiond ./cmd/impressiond
go build -o bin/loadtest ./loadtest
if [[ -n ${BASE:-} ]]; then
	basetree=$(mktemp -d)
	git worktree add -q --detach "$basetree" "$BASE"
	(cd "$basetree" && go build -o "$OLDPWD/bin/impressiond-base" ./cmd/impressiond)
	git worktree remove --force "$basetree"
fi
