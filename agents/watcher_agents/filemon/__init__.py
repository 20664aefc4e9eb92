"""filemon: the per-node file monitor. Watches the student workspaces with inotify, snapshots every saved
source file into the content-addressed store and reports file.save / file.delete / file.too_large events
through the durable outbox. See docs/filemon.md."""
