DROP TABLE tools;
DROP TABLE memory;
DROP TABLE audio;
DROP TABLE messages;
DROP TABLE conversations;
