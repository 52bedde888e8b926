--[[
Backline for REAPER (ReaScript, Lua 5.3/5.4 as bundled with REAPER 6/7).

  * With a time selection: sends it to Backline as /backline/region <start_s> <end_s> <bpm> <num> <den>
    (and /backline/generate <engine>), then waits for the take Backline writes and imports it at the
    edit cursor on the selected track.
  * Without a time selection: imports the newest take in TAKES_DIR at the edit cursor.

Backline writes each take as NAME.wav (+ NAME.mid) with NAME.json beside it
({"start_sample": ..., "start_seconds": ..., "start_bar": ..., "audio": "NAME.wav", "midi": "NAME.mid"}).
Set PLACE_AT_TAKE_BAR = true to import at the bar the take was generated for instead of the cursor.

Sending OSC: REAPER's Lua has no UDP, so the script uses LuaSocket when it is installed (e.g. via
ReaPack "mavriq-lua-sockets"), else liblo's `oscsend` (Linux: apt install liblo-tools; macOS: brew install
liblo), else it says what to install. Install: Actions > Show action list > New action > Load ReaScript.
--]]

local HOST, PORT = "127.0.0.1", 9000
local ENGINE = "bass"
local TAKES_DIR = (os.getenv("HOME") or os.getenv("USERPROFILE") or ".") .. "/Backline/takes"
local PLACE_AT_TAKE_BAR = false
local WAIT_SECONDS = 600

-- OSC encoding (strings padded to 4 bytes, big-endian float32 / int32) -------------------------------
local function osc_string(s)
  s = s .. "\0"
  return s .. string.rep("\0", (4 - #s % 4) % 4)
end

local function osc_message(address, types, ...)
  local args, parts = { ... }, { osc_string(address), osc_string("," .. types) }
  for i = 1, #types do
    local t, v = types:sub(i, i), args[i]
    if t == "f" then parts[#parts + 1] = string.pack(">f", v)
    elseif t == "i" then parts[#parts + 1] = string.pack(">i4", math.floor(v))
    elseif t == "s" then parts[#parts + 1] = osc_string(v) end
  end
  return table.concat(parts)
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function send(address, types, ...)
  local ok, socket = pcall(require, "socket")
  if ok and socket then
    local udp = socket.udp()
    udp:sendto(osc_message(address, types, ...), HOST, PORT)
    udp:close()
    return true
  end
  local cmd = { "oscsend", HOST, tostring(PORT), address, types }
  for _, v in ipairs({ ... }) do cmd[#cmd + 1] = shell_quote(v) end
  if reaper.ExecProcess then
    local out = reaper.ExecProcess(table.concat(cmd, " "), 5000)
    if out and out:match("^0\n") then return true end
  end
  reaper.ShowMessageBox("Could not send OSC to Backline.\nInstall LuaSocket (ReaPack) or liblo's oscsend.",
    "Backline", 0)
  return false
end

-- Takes --------------------------------------------------------------------------------------------
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function newest_take(after)
  local best, best_time, i = nil, after or -1, 0
  while true do
    local name = reaper.EnumerateFiles(TAKES_DIR, i)
    if not name then break end
    if name:match("%.json$") then
      local path = TAKES_DIR .. "/" .. name
      local text = read_file(path)
      local mtime = text and tonumber(text:match('"written"%s*:%s*([%d%.]+)')) or i
      if text and text:match('"audio"') and (best == nil or mtime >= best_time) then
        best, best_time = { json = path, text = text }, mtime
      end
    end
    i = i + 1
  end
  return best
end

local function import(take)
  local audio = take.text:match('"audio"%s*:%s*"([^"]+)"')
  if not audio then return false end
  local track = reaper.GetSelectedTrack(0, 0) or reaper.GetLastTouchedTrack()
  if not track then
    reaper.InsertTrackAtIndex(reaper.CountTracks(0), true)
    track = reaper.GetTrack(0, reaper.CountTracks(0) - 1)
  end
  reaper.SetOnlyTrackSelected(track)
  reaper.Undo_BeginBlock()
  if PLACE_AT_TAKE_BAR then
    local start = tonumber(take.text:match('"start_seconds"%s*:%s*([%-%d%.eE]+)'))
    if start then reaper.SetEditCurPos(start, false, false) end
  end
  local cursor = reaper.GetCursorPosition()
  reaper.InsertMedia(TAKES_DIR .. "/" .. audio, 0)  -- 0: onto the selected track at the edit cursor
  local midi = take.text:match('"midi"%s*:%s*"([^"]+)"')
  if midi then
    reaper.SetEditCurPos(cursor, false, false)
    reaper.InsertMedia(TAKES_DIR .. "/" .. midi, 1)  -- 1: onto a new track
  end
  reaper.Undo_EndBlock("Backline: import " .. audio, -1)
  reaper.UpdateArrange()
  return true
end

-- Main ---------------------------------------------------------------------------------------------
local start_s, end_s = reaper.GetSet_LoopTimeRange(false, false, 0, 0, false)
if end_s > start_s then
  local num, den, bpm = reaper.TimeMap_GetTimeSigAtTime(0, start_s)
  local before = newest_take()
  if send("/backline/region", "fffii", start_s, end_s, bpm, num, den) then
    send("/backline/generate", "s", ENGINE)
    local deadline = reaper.time_precise() + WAIT_SECONDS
    local function wait()
      local take = newest_take()
      if take and (before == nil or take.json ~= before.json) then
        import(take)
      elseif reaper.time_precise() < deadline then
        reaper.defer(wait)
      end
    end
    reaper.defer(wait)
  end
else
  local take = newest_take()
  if not (take and import(take)) then
    reaper.ShowMessageBox("No Backline take in " .. TAKES_DIR .. " yet.\nMake a time selection and run this "
      .. "again to send it to Backline.", "Backline", 0)
  end
end
