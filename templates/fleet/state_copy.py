import os
import sqlite3
import sys
src, dst = os.path.expanduser(sys.argv[1]), sys.argv[2]
if not os.path.isfile(src):
    print("absent")
    sys.exit(0)
if os.path.exists(dst):
    os.remove(dst)
os.umask(0o077)
con = sqlite3.connect(src, timeout=60)
if hasattr(con, "backup"):
    out = sqlite3.connect(dst)
    con.backup(out)
    out.close()
else:
    con.execute("VACUUM INTO ?", (dst,))
con.close()
print("copied")
